"""summary.csv: one row per experiment and k, each key statistic's mean over seeds, spread and bootstrap interval."""

from __future__ import annotations

import math

import numpy as np

from specdraft.analysis.bench_results import Experiment, seed_columns
from specdraft.analysis.statistics import (acceptance_rate, percentile_interval, request_speedup, rng_for,
                                           two_level_replicates)
from specdraft.decoding.cost_model import leviathan_speedup
from specdraft.plumbing.names import experiment_parts

MAX_PREDICTED_K = 16  # the range searched for the k the cost model predicts best
SEED_SPREAD = ("acceptance_rate", "speedup", "matching_speedup", "tokens_per_answer", "accuracy", "truncated_share")

SUMMARY_COLUMNS = [
    "experiment", "style", "scenario", "trained", "k", "num_seeds", "num_problems", "repeats", "concurrency",
    "acceptance_rate", "acceptance_rate_low", "acceptance_rate_high", "mean_acceptance_length", "alpha",
    "speedup_kind", "speedup", "speedup_low", "speedup_high", "request_speedup", "median_speedup",
    "matches_target", "matching_speedup", "truncated_share", "target_truncated_share",
    *(f"{name}_seed_sd" for name in SEED_SPREAD),
    "draft_cost", "verification_cost", "predicted_speedup", "predicted_speedup_steps", "best_k", "predicted_best_k",
    "tokens_per_answer", "accuracy", "target_accuracy",
    "seconds_per_answer", "target_seconds_per_answer", "latency_per_correct_s", "target_latency_per_correct_s",
    "target_tokens_per_second", "target_avg_ttft_ms", "target_avg_itl_ms",
    # The seed project's columns, under its names (its acceptance_rate and accuracy are ours above).
    "avg_tokens_generated", "total_samples", "peak_vram_gb", "tokens_per_second", "avg_ttft_ms", "avg_itl_ms",
    "total_duration_sec",
]


def per_answer_latency(seconds_per_answer: float, accuracy: float) -> float:
    """Seconds per correct answer: inf when no answer is correct, NaN when nothing was timed."""
    if math.isnan(seconds_per_answer) or math.isnan(accuracy):
        return math.nan
    return seconds_per_answer / accuracy if accuracy > 0 else math.inf


def _spread(values: list[float]) -> float:
    values = np.asarray(values, dtype=float)
    return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan


def _seed_values(experiment: Experiment, group, seeds: list[int], k: int) -> dict[str, list[float]]:
    values = {name: [] for name in (*SEED_SPREAD, "request_speedup")}
    for seed, columns in zip(seeds, seed_columns(group, seeds)):
        rows = group[group.seed == seed]
        matching = rows[rows.matches_target]
        request = float(request_speedup(columns))
        values["acceptance_rate"].append(float(acceptance_rate(columns)))
        values["request_speedup"].append(request)
        values["speedup"].append(experiment.throughput_speedup(seed, k) if experiment.concurrency > 1 else request)
        values["matching_speedup"].append(float(request_speedup(seed_columns(matching, [seed])[0]))
                                          if len(matching) else math.nan)
        values["tokens_per_answer"].append(rows.num_new_tokens.mean())
        values["accuracy"].append(rows.correct.mean())
        values["truncated_share"].append(rows.truncated.mean())
    return values


def summarize(experiments: list[Experiment], *, resamples: int, seed: int):
    """A DataFrame with one row per experiment and k.

    Above concurrency 1 the speedup is the batched run's throughput ratio, one per seed and without an interval."""
    import pandas as pd

    rows = []
    for experiment in experiments:
        style, scenario = experiment_parts(experiment.name)
        concurrency = experiment.concurrency
        for k, group in experiment.frame.groupby("k"):
            k = int(k)
            seeds = sorted(int(s) for s in group.seed.unique())
            columns = seed_columns(group, seeds)
            values = _seed_values(experiment, group, seeds, k)
            means = {name: float(np.mean(v)) for name, v in values.items()}
            rng = rng_for(seed, experiment.name, k)
            accept_low, accept_high = percentile_interval(two_level_replicates(columns, acceptance_rate, resamples,
                                                                               rng))
            speed_low, speed_high = (percentile_interval(two_level_replicates(columns, request_speedup, resamples,
                                                                              rng))
                                     if concurrency == 1 else (math.nan, math.nan))
            accepted, rejected = group.num_accepted.sum(), group.num_rejected_steps.sum()
            alpha = accepted / (accepted + rejected) if accepted + rejected else math.nan
            c, v = group.draft_cost.median(), group.verification_cost.median()
            target_accuracy = group.target_correct.mean()
            seconds, target_seconds = group.speculative_seconds.mean(), group.target_seconds.mean()
            rows.append({
                "experiment": experiment.name, "style": style, "scenario": scenario, "trained": style != "untrained",
                "k": k, "num_seeds": len(seeds), "num_problems": group.id.nunique(),
                "repeats": int(group.repeats.min()), "concurrency": concurrency,
                "acceptance_rate": means["acceptance_rate"], "acceptance_rate_low": accept_low,
                "acceptance_rate_high": accept_high,
                "mean_acceptance_length": 1 + accepted / max(1, group.num_steps.sum()), "alpha": alpha,
                "speedup_kind": "throughput" if concurrency > 1 else "per-request",
                "speedup": means["speedup"], "speedup_low": speed_low, "speedup_high": speed_high,
                "request_speedup": means["request_speedup"], "median_speedup": group.speedup.median(),
                "matches_target": group.matches_target.mean(),
                "matching_speedup": float(np.nanmean(values["matching_speedup"]))
                if not np.isnan(values["matching_speedup"]).all() else math.nan,
                "truncated_share": means["truncated_share"], "target_truncated_share": group.target_truncated.mean(),
                **{f"{name}_seed_sd": _spread(values[name]) for name in SEED_SPREAD},
                "draft_cost": c, "verification_cost": v,
                "predicted_speedup": leviathan_speedup(alpha, k, c) if not math.isnan(alpha + c) else math.nan,
                "predicted_speedup_steps": (accepted + group.num_steps.sum())
                / (c * group.num_proposed.sum() + v * group.num_steps.sum()),
                "tokens_per_answer": means["tokens_per_answer"], "accuracy": means["accuracy"],
                "target_accuracy": target_accuracy,
                "seconds_per_answer": seconds, "target_seconds_per_answer": target_seconds,
                "latency_per_correct_s": per_answer_latency(seconds, means["accuracy"]),
                "target_latency_per_correct_s": per_answer_latency(target_seconds, target_accuracy),
                "target_tokens_per_second": group.target_num_new_tokens.sum() / group.target_seconds.sum(),
                "target_avg_ttft_ms": group.target_ttft_ms.mean(), "target_avg_itl_ms": group.target_itl_ms.mean(),
                "avg_tokens_generated": group.num_new_tokens.mean(), "total_samples": len(group),
                "peak_vram_gb": group.peak_memory_gib.max(),
                "tokens_per_second": group.num_new_tokens.sum() / group.speculative_seconds.sum(),
                "avg_ttft_ms": group.ttft_ms.mean(), "avg_itl_ms": group.itl_ms.mean(),
                "total_duration_sec": group.speculative_seconds.sum(),
            })
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    summary["best_k"] = False
    summary["predicted_best_k"] = pd.array([pd.NA] * len(summary), dtype="Int64")
    for _, group in summary.groupby("experiment"):
        if group.speedup.notna().any():
            summary.loc[group.speedup.idxmax(), "best_k"] = True
        summary.loc[group.index, "predicted_best_k"] = predicted_best_k(group)
    return summary


def predicted_best_k(group) -> int | None:
    """The k in 1..MAX_PREDICTED_K Leviathan et al.'s formula ranks first from one experiment's alpha and c."""
    alpha, c = group.alpha.mean(), group.draft_cost.median()
    if math.isnan(alpha) or math.isnan(c):
        return None
    return max(range(1, MAX_PREDICTED_K + 1), key=lambda k: leviathan_speedup(alpha, k, c))
