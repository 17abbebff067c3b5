"""Are two demo runs' summary.csv equal outside the timing columns? Prints every cell that differs and exits 1
if any does (or the tables' rows or columns differ), 0 if they are equal.

    python benchmarks/summary_diff.py <run A>/results/summary.csv <run B>/results/summary.csv
"""

from __future__ import annotations

import re
import sys

import pandas as pd

TIMING = re.compile(r"speedup|seconds|_s$|per_second|ttft|itl|cost|best_k|duration|latency")
KEYS = ["experiment", "k"]


def differences(a: pd.DataFrame, b: pd.DataFrame) -> list[str]:
    if list(a.columns) != list(b.columns) or a[KEYS].values.tolist() != b[KEYS].values.tolist():
        return ["the tables differ in their columns or their (experiment, k) rows"]
    cols = [c for c in a.columns if not TIMING.search(c)]
    differ = (a[cols] != b[cols]) & ~(a[cols].isna() & b[cols].isna())
    return [f"{a.experiment[i]} k={a.k[i]} {cols[c]}: {a[cols[c]][i]} != {b[cols[c]][i]}"
            for i, c in zip(*differ.to_numpy().nonzero())]


def main() -> None:
    a, b = (pd.read_csv(path) for path in sys.argv[1:3])
    found = differences(a, b)
    compared = sum(not TIMING.search(c) for c in a.columns)
    print(f"{len(a)} rows, {compared} of {len(a.columns)} columns compared (timing columns left out): "
          f"{len(found)} differences")
    print("\n".join(found))
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
