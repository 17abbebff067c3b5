"""An experiment's benchmark as the summary reads it: every seed's benchmark.csv and benchmark_run.json, checked."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np

# The columns the summary reads; a file lacking one is rebuilt by rule bench.
REQUIRED_COLUMNS = ("seed", "id", "k", "num_new_tokens", "target_num_new_tokens", "num_proposed", "num_accepted",
                    "num_steps", "num_rejected_steps", "speculative_seconds", "target_seconds", "speedup",
                    "draft_cost", "verification_cost", "correct", "target_correct", "matches_target", "truncated",
                    "target_truncated", "repeats", "ttft_ms", "itl_ms", "target_ttft_ms", "target_itl_ms",
                    "peak_memory_gib")
RESAMPLED_COLUMNS = ("num_accepted", "num_proposed", "num_new_tokens", "speculative_seconds",
                     "target_num_new_tokens", "target_seconds")
CONDITIONS = ("concurrency", "num_speculative_tokens", "engine", "engine_weights", "dtype", "device_name",
              "repeats", "max_new_tokens", "temperature")


class BenchmarkFileError(ValueError):
    """A benchmark output the summary cannot read; the message names the file and the rule that rebuilds it."""


@dataclass
class Experiment:
    """One experiment's rows (all seeds) and, per seed, its run conditions and batched-run throughput."""

    name: str
    frame: object  # pandas.DataFrame of benchmark.csv
    conditions: dict[int, dict] = field(default_factory=dict)
    throughput: dict[int, dict | None] = field(default_factory=dict)

    @property
    def seeds(self) -> list[int]:
        return sorted(int(s) for s in self.frame["seed"].unique())

    @property
    def concurrency(self) -> int:
        values = {int(c.get("concurrency", 1)) for c in self.conditions.values()} or {1}
        if len(values) > 1:
            raise BenchmarkFileError(f"{self.name}: seeds ran at different concurrencies {sorted(values)}; "
                                     "rerun rule bench for this experiment")
        return values.pop()

    def throughput_speedup(self, seed: int, k: int) -> float:
        """The batched run's throughput ratio: speculative tokens per second over the target alone's."""
        runs = (self.throughput.get(seed) or {}).get("runs", {})
        if "target" not in runs or f"k{k}" not in runs:
            return math.nan
        return runs[f"k{k}"]["throughput_tok_s"] / runs["target"]["throughput_tok_s"]


def read_benchmark(name: str, csv_path: str, run_path: str | None = None) -> Experiment:
    """Read `csv_path` and, when given, `run_path`; raise BenchmarkFileError naming the file otherwise."""
    import pandas as pd

    try:
        frame = pd.read_csv(csv_path)
    except (OSError, ValueError) as error:
        raise BenchmarkFileError(f"{csv_path}: unreadable ({error}); rule bench rebuilds it") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise BenchmarkFileError(f"{csv_path}: missing column(s) {missing}; rule bench rebuilds it")
    if frame.empty:
        raise BenchmarkFileError(f"{csv_path}: no rows; rule bench rebuilds it")
    for column in ("correct", "target_correct", "matches_target", "truncated", "target_truncated"):
        frame[column] = frame[column].astype(str).str.lower().map({"true": True, "false": False, "1": True,
                                                                  "0": False})
        if frame[column].isna().any():
            raise BenchmarkFileError(f"{csv_path}: column {column} holds a value other than True/False; "
                                     "rule bench rebuilds it")
    experiment = Experiment(name, frame)
    if run_path is not None:
        _read_run(experiment, run_path)
    return experiment


def _read_run(experiment: Experiment, run_path: str) -> None:
    try:
        with open(run_path) as f:
            seeds = json.load(f)["seeds"]
        for seed, record in seeds.items():
            experiment.conditions[int(seed)] = dict(record["conditions"])
            experiment.throughput[int(seed)] = record.get("throughput")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise BenchmarkFileError(f"{run_path}: not a benchmark run record ({error!r}); rule bench rebuilds it") \
            from None
    absent = sorted(set(experiment.seeds) - set(experiment.conditions))
    if absent:
        raise BenchmarkFileError(f"{run_path}: no conditions for seed(s) {absent} of the benchmark.csv beside it; "
                                 "rule bench rebuilds it")


def seed_columns(frame, seeds: list[int], prefix: str = "") -> list[dict[str, np.ndarray]]:
    """One dict of RESAMPLED_COLUMNS arrays ([problem]) per seed, the rows sorted by problem id."""
    out = []
    for seed in seeds:
        rows = frame[frame["seed"] == seed].sort_values("id")
        out.append({f"{prefix}{c}": rows[c].to_numpy(dtype=float) for c in RESAMPLED_COLUMNS})
    return out


def paired_columns(cot: Experiment, cod: Experiment, k: int) -> tuple[list[int], list[dict[str, np.ndarray]]]:
    """Both styles' rows at k joined on (seed, id), over the seeds both ran (seed s of CoT with seed s of CoD):
    the seeds, and per seed one dict of 'cot.'- and 'cod.'-prefixed RESAMPLED_COLUMNS arrays ([problem])."""
    seeds, joined = [], []
    for seed in sorted(set(cot.seeds) & set(cod.seeds)):
        a = cot.frame[(cot.frame.seed == seed) & (cot.frame.k == k)].set_index("id")
        b = cod.frame[(cod.frame.seed == seed) & (cod.frame.k == k)].set_index("id")
        ids = sorted(set(a.index) & set(b.index))
        if ids:
            seeds.append(seed)
            joined.append({f"{style}.{c}": rows.loc[ids, c].to_numpy(dtype=float)
                           for style, rows in (("cot", a), ("cod", b)) for c in RESAMPLED_COLUMNS})
    return seeds, joined


def describe_conditions(experiments: list[Experiment]) -> dict[str, list]:
    """Each condition's distinct values over every experiment and seed (one value when all ran alike)."""
    values: dict[str, set] = {}
    for experiment in experiments:
        for conditions in experiment.conditions.values():
            for key in CONDITIONS:
                if key in conditions:
                    value = conditions[key]
                    values.setdefault(key, set()).add(tuple(value) if isinstance(value, list) else value)
    return {key: sorted(v, key=str) for key, v in values.items()}
