"""Ship a GPU's kernel choices: the configurations a benchmark run tuned, as `specdraft/engine/tuned/<gpu>.json`.

    python benchmarks/tuning_table.py docs/perf/h200_seed_int8_pdl_2026-11-29.json

`benchmarks/engine_speed.py` (and `engine_profile.py`) record every choice the kernels' tuner made in
`triton_tuned`; this writes them (all but shapes where no configuration compiled) as the table that
`specdraft.engine.tuning_table` reads on that GPU model, so that an engine there starts without timing
every candidate again.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from specdraft.engine.tuning_table import SHIPPED, gpu_slug, write  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("benchmark_json", help="a benchmark's JSON holding 'gpu' and 'triton_tuned'")
    args = parser.parse_args()
    with open(args.benchmark_json, encoding="utf-8") as f:
        run = json.load(f)
    failed = set(run.get("triton_failures", {}))
    choices = {key: config for key, config in run["triton_tuned"].items() if key not in failed}
    path = SHIPPED / f"{gpu_slug(run['gpu'])}.json"
    write(path, run["gpu"], choices, f"{args.benchmark_json}: {run.get('command', '')}")
    print(f"{path}: {len(choices)} choices")


if __name__ == "__main__":
    main()
