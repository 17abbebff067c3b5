"""Timing repeats: the order a problem's runs are timed in, and the figure a row keeps (their median)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable


def timing_order(num_runs: int, problem_index: int, repeat: int) -> list[int]:
    """The order of one problem's runs (0: the target alone, j: the j-th k) in one repeat: a cycle rotated by
    problem and repeat, so no run is always timed first or always right after the same one."""
    if num_runs < 1:
        raise ValueError(f"num_runs must be >= 1, got {num_runs}")
    start = (problem_index + repeat) % num_runs
    return [(start + j) % num_runs for j in range(num_runs)]


def median(values: Iterable[float]) -> float:
    """The median of the values that were measured (NaN marks one that was not); NaN when none was."""
    measured = [v for v in values if not math.isnan(v)]
    return statistics.median(measured) if measured else math.nan


def generator_seed(seed: int, problem_index: int, k: int) -> int:
    """The sampler's seed for one (problem, k) run: its repeats draw alike, and no two runs share draws."""
    return hash((seed, problem_index, k)) & (2**63 - 1)  # a tuple of ints hashes the same in every process
