"""Check and summarise a finished prepare + stats run (benchmarks/full_data.yaml or benchmarks/seed_data.yaml):
every CoD record a draft, every dropped row and problem counted, the CoD/CoT token ratios, and (with
`data.rewrites`) how many of the rewrites were matched to the dataset and kept. Writes one JSON with the
command, machine and conditions beside the figures, and prints them.

    python benchmarks/data_check.py --directory /tmp/data-full --out docs/data_full_rules.json \
        --command "snakemake data/processed/stats.csv ... --configfile benchmarks/full_data.yaml"

`--seed-ratios 0.78 0.59 0.63` compares the train CoD/CoT token ratios with the seed's (easy, medium, hard).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from specdraft.plumbing.names import SCENARIOS  # noqa: E402
from specdraft.data.styles import draft_steps, step_yields  # noqa: E402
from specdraft.plumbing.jsonl import read_jsonl  # noqa: E402


def check(directory: Path, seed_ratios: list[float] | None) -> dict:
    processed = directory / "data/processed"
    stats = {(r["style"], r["scenario"], r["split"]): r for r in csv.DictReader(open(processed / "stats.csv"))}
    figures = {}
    for scenario in SCENARIOS:
        report = json.loads((processed / f"cod_{scenario}/report.json").read_text())
        cod_source = report["solutions"]["train"]["cod"]
        records, checks = {}, {}
        for split in ("train", "test"):
            cod = read_jsonl(processed / f"cod_{scenario}/{split}.jsonl")
            cot = read_jsonl(processed / f"cot_{scenario}/{split}.jsonl")
            drafted = [r for r in cod if r["solution"] is not None]
            checks[split] = {
                "records": len(cod),
                "same_problems_as_cot": [r["id"] for r in cod] == [r["id"] for r in cot],
                "cod_without_solution": len(cod) - len(drafted),
                "cod_without_step_before_separator": sum(not draft_steps(r["solution"]) for r in drafted),
            }
            if (cod_source if split == "train" else report["solutions"]["test"]["cod"]) == "rules":
                checks[split]["cod_last_step_not_yielding_answer"] = sum(
                    not step_yields(draft_steps(r["solution"])[-1], r["answer"], scenario)
                    for r in drafted if draft_steps(r["solution"]))
            records[split] = {
                "cot_tokens_mean": float(stats["cot", scenario, split]["tokens_mean"]),
                "cod_tokens_mean": float(stats["cod", scenario, split]["tokens_mean"]),
                "cot_tokens_p99": float(stats["cot", scenario, split]["tokens_p99"]),
                "cod_tokens_p99": float(stats["cod", scenario, split]["tokens_p99"]),
                "cod_to_cot_token_ratio": float(stats["cod", scenario, split]["token_ratio_to_cot"]),
            }
        entry = {"report": report, "checks": checks, "tokens": records}
        if "rewrites" in report:
            entry["rewrites_matched_share"] = {style: r["matched"] / r["rows"] for style, r in report["rewrites"].items()}
            entry["rewrites_kept_share"] = {style: r["kept"] / r["rows"] for style, r in report["rewrites"].items()}
        if seed_ratios is not None:
            seed = seed_ratios[SCENARIOS.index(scenario)]
            entry["seed_ratio"] = seed
            entry["ratio_minus_seed"] = round(records["train"]["cod_to_cot_token_ratio"] - seed, 4)
        figures[scenario] = entry
    return figures


def machine() -> dict:
    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--directory", type=Path, required=True, help="the run's --directory")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--command", required=True, help="the command that made the run, recorded as is")
    parser.add_argument("--wall-seconds", type=float, help="the run's wall time, recorded as is")
    parser.add_argument("--seed-ratios", type=float, nargs=3, help="the seed's CoD/CoT ratios, easy medium hard")
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    result = {
        "command": args.command,
        "check_command": " ".join(["python", *sys.argv]),
        "machine": machine(),
        "conditions": {"date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "git_commit": commit,
                       "wall_seconds": args.wall_seconds, "tokenizer": "Qwen2.5 (/work/shared/tokenizers/qwen2.5-instruct)"},
        "scenarios": check(args.directory, args.seed_ratios),
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for scenario, entry in result["scenarios"].items():
        train = entry["report"]["train"]
        print(f"{scenario}: train kept {train['kept']} of {train['candidates']} (dropped {train['dropped']}, "
              f"excluded {train['excluded']}); CoD/CoT tokens {entry['tokens']['train']['cod_to_cot_token_ratio']:.3f}; "
              f"checks {entry['checks']}" + (f"; rewrites matched {entry['rewrites_matched_share']}"
                                            if "rewrites_matched_share" in entry else ""))


if __name__ == "__main__":
    main()
