"""Are two demo runs' summary.csv equal outside the timing columns? Prints the cells that differ (none: equal).

    python benchmarks/summary_diff.py <run A>/results/summary.csv <run B>/results/summary.csv
"""
import re, sys
import pandas as pd
TIMING = re.compile(r"speedup|seconds|_s$|per_second|ttft|itl|cost|best_k|duration|latency")
a, b = (pd.read_csv(p) for p in sys.argv[1:3])
cols = [c for c in a.columns if not TIMING.search(c)]
print("compared columns:", len(cols), "of", len(a.columns), "; rows", len(a), len(b))
diff = (a[cols] != b[cols]) & ~(a[cols].isna() & b[cols].isna())
for (i, c) in zip(*diff.to_numpy().nonzero()):
    print(a.experiment[i], a.k[i], cols[c], a[cols[c]][i], b[cols[c]][i])
