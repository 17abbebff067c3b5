"""The demo's benchmark with `engine_weights: int8` against the same run with the models' own weights.

    python benchmarks/int8_vs_bf16.py --run /tmp/int8demo --out docs/perf/demo_int8_vs_bf16_<date>.json
    python benchmarks/int8_vs_bf16.py --run /tmp/int8demo --reuse-bf16 --out ...   # int8 again, bf16 kept
    python benchmarks/int8_vs_bf16.py --bf16 RUN/bf16 --int8 RUN/int8          # compare two finished runs

`--run DIR` copies the project (`git ls-files`, as benchmarks/demo_time.py does) to DIR/bf16 and runs the
README's demo there (`engine_weights: model_dtype`, the default: the models' own float32 weights on a CPU). It then
copies DIR/bf16 to DIR/int8, file times kept, puts this checkout's files over the copy's (the same files
unless --reuse-bf16 kept an earlier bf16 run), and reruns there only what the engine serves at benchmark
time (`bench`, `baseline`, `acceptance`, `acceptance_baseline`) and what reads them (`summary`,
`acceptance_check`), with `--config engine_weights=int8`: the same trained adapters, prompts, seed and k.

The comparison reads what the two runs wrote: results/summary.csv (one row per experiment and k),
results/{experiment}/benchmark.csv (per problem), results/{experiment}/seed0/target_outputs.jsonl (the target's
greedy token ids, from the acceptance stage) and results/acceptance_check.csv. It writes one JSON (command,
machine, conditions, per experiment and k the bf16 and int8 figures and int8 - bf16) and prints a table.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from demo_time import REPO, copy_project, machine  # benchmarks/demo_time.py, beside this script

DEMO_ARGS = ["--cores", "2", "--configfile", "demo/config.yaml"]  # the README's demo line
SEED = "0"  # the per-problem checks read this replicate's outputs (the demo's first seed)
INT8_RULES = ["bench", "baseline", "acceptance", "acceptance_baseline"]
# Targets first: --configfile, --config and --forcerun each take several values.
INT8_ARGS = ["results/summary.csv", "results/acceptance_check.csv", *DEMO_ARGS,
             "--config", "engine_weights=int8", "--forcerun", *INT8_RULES,
             # Only file times decide what else is stale: engine_weights is also a param of distill, whose
             # rerun would retrain the drafts; --allowed-rules makes any such attempt fail instead.
             "--rerun-triggers", "mtime", "--allowed-rules", *INT8_RULES, "summary", "acceptance_check"]
FIGURES = ["acceptance_rate", "mean_acceptance_length", "accuracy", "target_accuracy", "tokens_per_answer",
           "matches_target", "speedup"]


def snakemake(run_dir: Path, args: list[str]) -> float:
    """Run Snakemake in `run_dir` on the copy's own package; its console goes to a log there. Seconds."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(run_dir), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=run_dir, capture_output=True,
                            text=True, env=env)
    seconds = time.perf_counter() - start
    (run_dir / "int8_vs_bf16_console.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        sys.exit(f"snakemake {' '.join(args)} failed in {run_dir} (rc {result.returncode}); "
                 f"its console: {run_dir / 'int8_vs_bf16_console.log'}")
    return seconds


def head_commit() -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()


def run(out_dir: Path, reuse_bf16: bool) -> tuple[Path, Path, dict]:
    bf16, int8 = out_dir / "bf16", out_dir / "int8"
    if int8.exists() or (bf16.exists() and not reuse_bf16):
        sys.exit(f"{int8 if int8.exists() else bf16} exists: give --run a new directory (with --reuse-bf16 only "
                 "DIR/bf16 may exist), or compare finished runs with --bf16/--int8")
    timing = {"load_average_before": os.getloadavg()}
    if reuse_bf16:
        if not (bf16 / "results" / "summary.csv").is_file():
            sys.exit(f"--reuse-bf16: {bf16} holds no finished demo run (no results/summary.csv)")
    else:
        bf16.mkdir(parents=True)
        copy_project(bf16)
        (bf16 / "int8_vs_bf16_commit").write_text(head_commit() + "\n")
        timing["bf16_wall_seconds"] = round(snakemake(bf16, DEMO_ARGS), 1)
    shutil.copytree(bf16, int8, symlinks=True)  # copy2 keeps file times, so nothing upstream looks stale
    copy_project(int8)  # this checkout's code: none of it is a rule's input, so nothing looks stale
    (int8 / "int8_vs_bf16_commit").write_text(head_commit() + "\n")
    timing["int8_wall_seconds"] = round(snakemake(int8, INT8_ARGS), 1)
    timing["load_average_after"] = os.getloadavg()
    return bf16, int8, timing


def run_commit(run_dir: Path) -> str | None:
    path = run_dir / "int8_vs_bf16_commit"
    return path.read_text().strip() if path.is_file() else None


def read_csv(path: Path) -> list[dict]:
    if not path.is_file():
        sys.exit(f"{path} is missing: is this a finished demo run directory?")
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def number(text: str) -> float | None:
    """A CSV cell as a number; booleans as 0/1; None where empty."""
    if text in ("True", "False"):
        return float(text == "True")
    return float(text) if text not in ("", None) else None


def target_outputs(run_dir: Path, experiment: str) -> dict[str, list[int]]:
    """The target's greedy answer per problem id (the answer's tokens, not the continuation past eos)."""
    path = run_dir / "results" / experiment / f"seed{SEED}" / "target_outputs.jsonl"
    rows = [json.loads(line) for line in path.open()]
    return {r["id"]: r["output_ids"][: r["num_new_tokens"]] for r in rows}


def compare(bf16: Path, int8: Path) -> list[dict]:
    """Per experiment and k: each figure in both runs and int8 - bf16, the per-problem checks beside them."""
    summaries = {name: {(r["experiment"], r["k"]): r for r in read_csv(d / "results" / "summary.csv")}
                 for name, d in (("bf16", bf16), ("int8", int8))}
    if summaries["bf16"].keys() != summaries["int8"].keys():
        sys.exit("the two runs' summary.csv hold different experiments or k values")
    checks = {name: {(r["experiment"], r["k"]): r for r in read_csv(d / "results" / "acceptance_check.csv")
                     if r["seed"] == SEED}
              for name, d in (("bf16", bf16), ("int8", int8))}
    rows = []
    for key, b in summaries["bf16"].items():
        experiment, k = key
        q = summaries["int8"][key]
        row = {"experiment": experiment, "style": b["style"], "scenario": b["scenario"], "k": int(k),
               "num_problems": int(b["num_problems"])}
        for figure in FIGURES:
            x, y = number(b[figure]), number(q[figure])
            row[figure] = {"bf16": x, "int8": y, "difference": None if x is None or y is None else round(y - x, 6)}
        # The target alone: does the int8 target answer as the float model does? Token for token, from the
        # acceptance stage's greedy outputs, and by answer correctness per problem from the bench.
        out_b, out_q = target_outputs(bf16, experiment), target_outputs(int8, experiment)
        bench_b = {r["id"]: r for r in read_csv(bf16 / "results" / experiment / "benchmark.csv")
                   if r["k"] == k and r["seed"] == SEED}
        bench_q = {r["id"]: r for r in read_csv(int8 / "results" / experiment / "benchmark.csv")
                   if r["k"] == k and r["seed"] == SEED}
        row["target_outputs_identical"] = sum(out_b[i] == out_q[i] for i in out_b)
        row["target_correct_changed"] = sum(bench_b[i]["target_correct"] != bench_q[i]["target_correct"]
                                            for i in bench_b)
        # matches_target in the int8 run: speculative output == the int8 target's greedy output.
        row["int8_speculative_equals_int8_target"] = sum(r["matches_target"] == "True" for r in bench_q.values())
        check = {name: checks[name].get(key) for name in checks}
        row["acceptance_prediction_matches"] = {
            name: None if c is None else f"{c['num_matching']}/{c['num_problems']}" for name, c in check.items()}
        rows.append(row)
    return rows


def fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_table(rows: list[dict]) -> None:
    print(f"{'experiment':<16}{'k':>2}  {'acceptance rate':>22}  {'mean accept. length':>22}  "
          f"{'accuracy':>14}  {'tokens per answer':>22}  spec==int8 target  int8 target==bf16 target")
    for r in rows:
        cells = []
        for figure, digits in (("acceptance_rate", 3), ("mean_acceptance_length", 3), ("accuracy", 2),
                               ("tokens_per_answer", 1)):
            f = r[figure]
            width = 14 if figure == "accuracy" else 22
            cells.append(f"{fmt(f['bf16'], digits)} -> {fmt(f['int8'], digits)} ({f['difference']:+.{digits}f})"
                         .rjust(width) if f["difference"] is not None else "-".rjust(width))
        print(f"{r['experiment']:<16}{r['k']:>2}  " + "  ".join(cells)
              + f"  {r['int8_speculative_equals_int8_target']:>8}/{r['num_problems']:<8}"
              + f"  {r['target_outputs_identical']:>8}/{r['num_problems']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="run both into DIR/bf16 and DIR/int8, then compare")
    parser.add_argument("--reuse-bf16", action="store_true", help="with --run: keep a finished DIR/bf16")
    parser.add_argument("--bf16", type=Path, help="a finished demo run with engine_weights: model_dtype")
    parser.add_argument("--int8", type=Path, help="the same run with bench and what follows rerun in int8")
    parser.add_argument("--out", type=Path, help="JSON to write (default: none; the table is printed)")
    args = parser.parse_args()
    if (args.run is None) == (args.bf16 is None or args.int8 is None):
        parser.error("give --run DIR, or both --bf16 DIR and --int8 DIR")
    timing = {}  # the runs' wall times and load, when this invocation ran them
    if args.run is not None:
        bf16, int8, timing = run(args.run, args.reuse_bf16)
    else:
        bf16, int8 = args.bf16, args.int8
    rows = compare(bf16, int8)
    print_table(rows)
    if args.out is None:
        return
    record = {
        "command": "python benchmarks/int8_vs_bf16.py " + " ".join(sys.argv[1:]),
        "bf16_run": "snakemake " + " ".join(DEMO_ARGS) + "  (in a clean copy of the project, git ls-files)",
        "int8_run": "snakemake " + " ".join(INT8_ARGS) + "  (in a copy of the bf16 run's directory)",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": head_commit(),
        "run_commits": {"bf16": run_commit(bf16), "int8": run_commit(int8)},  # the code each run copied
        "machine": machine(),
        "conditions": {
            "config": "demo/config.yaml: tiny Qwen2-architecture models (float32, CPU), 10 test problems per "
                      "scenario, greedy, max_new_tokens 128; the same trained adapters in both runs",
            "bf16": "engine_weights: model_dtype, the models' own weights (float32 here)",
            "int8": "engine_weights: int8, weight-only int8 with one scale per output channel; on a CPU the "
                    "engine dequantizes and multiplies in float32",
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), **timing,
        },
        "fields": {
            "figures": "from results/summary.csv of each run: bf16, int8 and difference (int8 - bf16)",
            "int8_speculative_equals_int8_target": "problems whose int8 speculative output equals the int8 "
                                                   "target's own greedy output token for token (matches_target)",
            "target_outputs_identical": "problems whose int8 target's greedy answer equals the bf16 target's "
                                        "token for token (target_outputs.jsonl)",
            "target_correct_changed": "problems whose target-alone correctness differs between the runs",
            "acceptance_prediction_matches": "acceptance_check.csv: bench rows whose counts equal the offline "
                                             "prediction, in each run",
        },
        "rows": rows,
    }
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
