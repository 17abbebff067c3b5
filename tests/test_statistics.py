"""The summary's statistics: Holm's adjustment, the bootstrap and sign-flip p-values, and the two-level paired
bootstrap behaving as the design demands (pairing, between-seed spread)."""

import math

import numpy as np
import pytest

from specdraft.analysis.comparison import _difference
from specdraft.analysis.statistics import (acceptance_rate, bootstrap_p_value, holm, percentile_interval, rng_for,
                                           seed_mean, sign_flip_p_value, two_level_replicates)


def test_holm_on_a_known_set_of_p_values():
    # Sorted: 0.005 x 4 = 0.02; 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04, raised to the running 0.06.
    adjusted = holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    with_nan = holm([0.02, math.nan, 0.01])  # NaN is no test: m = 2
    assert with_nan[0] == pytest.approx(0.02) and math.isnan(with_nan[1]) and with_nan[2] == pytest.approx(0.02)


def test_bootstrap_p_value_is_two_sided_with_the_plus_one_correction():
    assert bootstrap_p_value(np.ones(99)) == pytest.approx(2 * 1 / 100)  # no replicate <= 0
    assert bootstrap_p_value(-np.ones(99)) == pytest.approx(2 * 1 / 100)
    assert bootstrap_p_value(np.r_[-np.ones(50), np.ones(49)]) == 1.0
    assert bootstrap_p_value(np.r_[np.zeros(3), np.ones(96)]) == pytest.approx(2 * 4 / 100)
    assert math.isnan(bootstrap_p_value(np.array([math.nan])))


def test_sign_flip_p_value_is_exact_over_sign_patterns():
    assert sign_flip_p_value(np.array([0.1, 0.2, 0.3])) == pytest.approx(2 / 8)  # only +++ and --- reach 0.2
    assert sign_flip_p_value(np.array([0.1, -0.1])) == 1.0
    assert math.isnan(sign_flip_p_value(np.array([])))


def _paired(cot: np.ndarray, cod: np.ndarray, proposed: float = 10.0) -> dict:
    """One seed's paired columns: accepted tokens of `proposed` per problem."""
    ones = np.full(len(cot), proposed)
    return {"cot.num_accepted": cot, "cot.num_proposed": ones, "cod.num_accepted": cod, "cod.num_proposed": ones}


def _width(seeds, statistic, rng_name="w") -> float:
    low, high = percentile_interval(two_level_replicates(seeds, statistic, 4000, rng_for(0, rng_name)))
    return high - low


def _unpaired_width(seeds) -> float:
    """Each style's problems resampled on their own: the wrong design for these data."""
    style = lambda s: [{n[4:]: v for n, v in c.items() if n.startswith(s)} for c in seeds]  # noqa: E731
    cod = two_level_replicates(style("cod."), acceptance_rate, 4000, rng_for(0, "cod"))
    cot = two_level_replicates(style("cot."), acceptance_rate, 4000, rng_for(0, "cot"))
    low, high = percentile_interval(cod - cot)
    return high - low


def test_paired_interval_is_wider_than_the_unpaired_one_under_negative_correlation():
    rng = np.random.default_rng(1)
    cot = rng.integers(0, 11, 40).astype(float)
    negative = [_paired(cot, 10 - cot)]  # a problem CoT accepts well, CoD accepts badly
    positive = [_paired(cot, np.clip(cot + 1, 0, 10))]
    difference = _difference(acceptance_rate)
    # Var(cod - cot) = Var(cod) + Var(cot) - 2 Cov: sqrt(2) times the unpaired width at correlation -1.
    assert _width(negative, difference) > 1.25 * _unpaired_width(negative)
    assert _width(positive, difference) < 0.5 * _unpaired_width(positive)


def test_two_level_interval_widens_with_the_spread_between_seeds():
    rng = np.random.default_rng(2)
    cot = [rng.integers(8, 16, 30).astype(float) for _ in range(3)]
    noise = [rng.integers(-2, 3, 30) for _ in range(3)]  # the same problem-level noise in both cases
    # The same mean difference (+2 of 30 proposed), the same spread within seeds, different spread between them.
    alike = [_paired(c, c + 2 + e, proposed=30) for c, e in zip(cot, noise)]
    spread = [_paired(c, c + shift + e, proposed=30) for c, e, shift in zip(cot, noise, (-4, 2, 8))]
    difference = _difference(acceptance_rate)
    assert seed_mean(alike, difference) == pytest.approx(seed_mean(spread, difference))
    assert _width(spread, difference) > 2 * _width(alike, difference) > 0


def test_one_seed_is_the_problem_bootstrap_and_repeats_with_its_seed():
    columns = [{"num_accepted": np.array([8.0, 2.0]), "num_proposed": np.array([10.0, 10.0])}]
    replicates = two_level_replicates(columns, acceptance_rate, 500, rng_for(3, "x"))
    assert set(np.round(replicates, 6)) == {0.2, 0.5, 0.8}
    again = two_level_replicates(columns, acceptance_rate, 500, rng_for(3, "x"))
    other = two_level_replicates(columns, acceptance_rate, 500, rng_for(4, "x"))
    assert np.array_equal(replicates, again) and not np.array_equal(replicates, other)
