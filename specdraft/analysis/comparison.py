"""cod_vs_cot.csv: CoD minus CoT per scenario, k and statistic, paired and replicated, with Holm-adjusted
p-values; the primary comparison is named in config before the run, every other one is exploratory."""

from __future__ import annotations

import math

import numpy as np

from specdraft.analysis.bench_results import Experiment, paired_columns
from specdraft.analysis.statistics import (ALPHA, STATISTICS, bootstrap_p_value, holm, percentile_interval,
                                           rng_for, seed_mean, sign_flip_p_value, two_level_replicates)
from specdraft.plumbing.names import SCENARIOS

COMPARISON_COLUMNS = ["scenario", "k", "statistic", "label", "num_seeds", "num_problems", "resampled", "cot", "cod",
                      "difference", "difference_low", "difference_high", "p_value", "p_holm", "family_size",
                      "beyond_noise"]
PAIRED_BOOTSTRAP = "seeds, then problems within each seed; CoT and CoD drawn together (paired)"
SEED_SIGN_FLIP = "seeds only (one throughput per run): exact sign-flip test of the paired seed differences"
NAMES = {"acceptance_rate": "acceptance rate", "speedup": "speedup", "tokens_per_answer": "tokens per answer"}


def primary_k(configured: int, ks) -> int:
    """The configured primary k, or the nearest k the benchmark ran (the smaller of two equally near)."""
    ks = sorted(set(int(k) for k in ks))
    if not ks or configured in ks:
        return configured
    return min(ks, key=lambda k: (abs(k - configured), k))


def _style(statistic, style: str):
    prefix = f"{style}."
    return lambda c: statistic({n[len(prefix):]: v for n, v in c.items() if n.startswith(prefix)})


def _difference(statistic):
    cod, cot = _style(statistic, "cod"), _style(statistic, "cot")
    return lambda c: cod(c) - cot(c)


def _compare(cot: Experiment, cod: Experiment, scenario: str, k: int, statistic: str, resamples: int,
             seed: int) -> dict | None:
    seeds, joined = paired_columns(cot, cod, k)
    if not seeds:
        return None
    row = {"scenario": scenario, "k": k, "statistic": statistic, "num_seeds": len(seeds),
           "num_problems": int(np.mean([len(c["cot.num_proposed"]) for c in joined]))}
    if statistic == "speedup" and max(cot.concurrency, cod.concurrency) > 1:
        a = np.array([cot.throughput_speedup(s, k) for s in seeds])
        b = np.array([cod.throughput_speedup(s, k) for s in seeds])
        return row | {"resampled": SEED_SIGN_FLIP, "cot": a.mean(), "cod": b.mean(), "difference": (b - a).mean(),
                      "difference_low": math.nan, "difference_high": math.nan, "p_value": sign_flip_p_value(b - a)}
    fn = STATISTICS[statistic]
    replicates = two_level_replicates(joined, _difference(fn), resamples, rng_for(seed, "compare", scenario, k,
                                                                                  statistic))
    low, high = percentile_interval(replicates)
    return row | {"resampled": PAIRED_BOOTSTRAP, "cot": seed_mean(joined, _style(fn, "cot")),
                  "cod": seed_mean(joined, _style(fn, "cod")), "difference": seed_mean(joined, _difference(fn)),
                  "difference_low": low, "difference_high": high, "p_value": bootstrap_p_value(replicates)}


def compare_styles(experiments: list[Experiment], *, resamples: int, seed: int, primary_statistic: str,
                   primary_k_configured: int):
    """CoD minus CoT for every scenario with both styles, every k both ran and every statistic in STATISTICS.

    `p_holm` is Holm's adjustment within the row's family (primary or exploratory), so `beyond_noise` holds a
    family-wise error rate of ALPHA."""
    import pandas as pd

    if primary_statistic not in STATISTICS:
        raise ValueError(f"summary.primary.statistic must be one of {list(STATISTICS)}, got {primary_statistic!r}")
    by_name = {e.name: e for e in experiments}
    pairs = [(s, by_name[f"cot_{s}"], by_name[f"cod_{s}"]) for s in SCENARIOS
             if f"cot_{s}" in by_name and f"cod_{s}" in by_name]
    ks = {int(k) for _, cot, cod in pairs for k in set(cot.frame.k) & set(cod.frame.k)}
    chosen_k = primary_k(primary_k_configured, ks)
    rows = []
    for scenario, cot, cod in pairs:
        for k in sorted(set(int(k) for k in cot.frame.k) & set(int(k) for k in cod.frame.k)):
            for statistic in STATISTICS:
                row = _compare(cot, cod, scenario, k, statistic, resamples, seed)
                if row is not None:
                    primary = statistic == primary_statistic and k == chosen_k
                    rows.append(row | {"label": "primary" if primary else "exploratory"})
    comparison = pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
    for label, family in comparison.groupby("label"):
        comparison.loc[family.index, "p_holm"] = holm(family.p_value.to_numpy())
        comparison.loc[family.index, "family_size"] = int(family.p_value.notna().sum())
    comparison["beyond_noise"] = (comparison.p_holm <= ALPHA).astype(bool)
    comparison["family_size"] = comparison["family_size"].astype("Int64")
    return comparison


def verdict(row, short: bool = False) -> str:
    """One sentence on a CoD-minus-CoT difference and its Holm-adjusted p-value (`short`: the judgement alone)."""
    what = NAMES[row.statistic]
    if math.isnan(row.p_holm):
        return f"{what}: no test (too few seeds or problems)"
    noise = (f"beyond the noise (Holm-adjusted p = {row.p_holm:.3g} over {row.family_size} {row.label} tests)"
             if row.beyond_noise else
             f"within the noise (Holm-adjusted p = {row.p_holm:.3g} over {row.family_size} {row.label} tests)")
    if short:
        return noise
    direction = "the same as" if row.difference == 0 else (
        f"{'higher' if row.difference > 0 else 'lower'} by {abs(row.difference):.3g} than")
    interval = ("" if math.isnan(row.difference_low)
                else f", 95% interval [{row.difference_low:.3g}, {row.difference_high:.3g}]")
    return f"{row.label.capitalize()}: CoD's {what} is {direction} CoT's{interval}: {noise}."
