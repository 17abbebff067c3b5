"""Resampling statistics for a replicated, paired design: seeds (training runs) above problems.

A statistic maps column arrays [..., problem] to [...], so one function gives the point estimate and the
replicates; the two-level bootstrap is Davison & Hinkley 1997, ch. 3 (hierarchical data).
"""

from __future__ import annotations

import itertools
import math
import zlib
from collections.abc import Callable

import numpy as np

Columns = dict[str, np.ndarray]  # column name -> values, [problem] or [resamples, problem]
Statistic = Callable[[Columns], np.ndarray]
ALPHA = 0.05  # 95% intervals; the family-wise error rate Holm's procedure holds


def acceptance_rate(c: Columns) -> np.ndarray:
    """accepted / proposed, pooled over the problems (vLLM's definition)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return c["num_accepted"].sum(-1) / c["num_proposed"].sum(-1)


def request_speedup(c: Columns) -> np.ndarray:
    """Pooled throughput ratio of one-at-a-time requests: (speculative tokens / s) / (target tokens / s)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((c["num_new_tokens"].sum(-1) / c["speculative_seconds"].sum(-1))
                / (c["target_num_new_tokens"].sum(-1) / c["target_seconds"].sum(-1)))


def tokens_per_answer(c: Columns) -> np.ndarray:
    return c["num_new_tokens"].mean(-1)


STATISTICS: dict[str, Statistic] = {"acceptance_rate": acceptance_rate, "speedup": request_speedup,
                                    "tokens_per_answer": tokens_per_answer}


def rng_for(seed: int, *names: object) -> np.random.Generator:
    """A generator seeded by the config's seed and the names of what it resamples, whatever the order."""
    return np.random.default_rng([seed, *(zlib.crc32(str(n).encode()) for n in names)])


def seed_mean(seeds: list[Columns], statistic: Statistic) -> float:
    """The point estimate: the statistic on each seed's problems, averaged over the seeds."""
    return float(np.mean([statistic(columns) for columns in seeds]))


def two_level_replicates(seeds: list[Columns], statistic: Statistic, resamples: int,
                         rng: np.random.Generator) -> np.ndarray:
    """[resamples] bootstrap replicates of `seed_mean`: seeds drawn with replacement, then each drawn seed's
    problems drawn with replacement (independently per draw, also when a seed is drawn twice)."""
    drawn = rng.integers(0, len(seeds), size=(resamples, len(seeds)))  # [resamples, slot]
    total = np.zeros(resamples)
    for slot in range(len(seeds)):
        values = np.empty(resamples)
        for s, columns in enumerate(seeds):
            chosen = drawn[:, slot] == s
            n = len(next(iter(columns.values())))
            idx = rng.integers(0, n, size=(int(chosen.sum()), n))  # [replicates drawing s here, problem]
            values[chosen] = statistic({name: v[idx] for name, v in columns.items()})
        total += values
    return total / len(seeds)


def percentile_interval(replicates: np.ndarray, alpha: float = ALPHA) -> tuple[float, float]:
    """The central 1 - alpha of the replicates, NaN ones left out."""
    values = replicates[~np.isnan(replicates)]
    if not len(values):
        return math.nan, math.nan
    low, high = np.percentile(values, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high)


def bootstrap_p_value(replicates: np.ndarray) -> float:
    """Two-sided bootstrap p-value of a zero difference, with the +1 correction (Davison & Hinkley 1997, ch. 4)."""
    values = replicates[~np.isnan(replicates)]
    if not len(values):
        return math.nan
    below, above = (1 + (values <= 0).sum()) / (len(values) + 1), (1 + (values >= 0).sum()) / (len(values) + 1)
    return float(min(1.0, 2 * min(below, above)))


def sign_flip_p_value(differences: np.ndarray) -> float:
    """Exact two-sided sign-flip p-value of a zero mean paired difference (at least 2 / 2**S with S seeds)."""
    d = np.asarray(differences, dtype=float)
    if not len(d) or np.isnan(d).any():
        return math.nan
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=len(d))))  # [2**S, S]
    means = np.abs((signs * d).mean(-1))
    return float((means >= abs(d.mean()) - 1e-12).mean())


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values (Holm 1979) over the non-NaN entries, in the input's order."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, math.nan)
    present = np.flatnonzero(~np.isnan(p))
    running = 0.0
    for rank, i in enumerate(present[np.argsort(p[present], kind="stable")]):
        running = max(running, min(1.0, (len(present) - rank) * p[i]))
        adjusted[i] = running
    return adjusted
