"""Ship a GPU's kernel choices: the configurations benchmark runs tuned, as `specdraft/engine/tuned/<gpu>.json`.

    python benchmarks/tuning_table.py docs/perf/h200_seed_int8_pdl_2026-11-29.json
    python benchmarks/tuning_table.py --merge docs/perf/h200_kernel_cache_2026-12-03.json

Each source is a benchmark's JSON (`engine_speed.py` and `engine_profile.py` record the tuner's choices in
`triton_tuned`, its failures in `triton_failures`) or a machine's own table (`SPECDRAFT_KERNEL_CACHE`), all of
one GPU. Later sources win a key; --merge keeps the shipped table's other keys and its provenance. Shapes where
no configuration compiled are left out, so that an engine there tunes them afresh.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from specdraft.engine.tuning_table import SHIPPED, gpu_slug, read, write  # noqa: E402


def source_choices(path: str) -> tuple[str, dict, str]:
    """(GPU name, choices, provenance) of a benchmark JSON or a tuning table file."""
    with open(path, encoding="utf-8") as f:
        run = json.load(f)
    if "triton_tuned" in run:
        failed = set(run.get("triton_failures", {}))
        choices = {key: config for key, config in run["triton_tuned"].items() if key not in failed}
        return run["gpu"], choices, f"{path}: {run.get('command', '')}"
    return run["gpu"], read(Path(path)), f"{path}: {run.get('source', '')}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", nargs="+", help="benchmark JSONs or tuning tables, all of one GPU")
    parser.add_argument("--merge", action="store_true", help="keep the shipped table's keys the sources lack")
    args = parser.parse_args()
    loaded = [source_choices(p) for p in args.sources]
    gpus = {gpu for gpu, _, _ in loaded}
    if len(gpus) != 1:
        sys.exit(f"the sources are of several GPUs: {sorted(gpus)}")
    gpu = gpus.pop()
    path = SHIPPED / f"{gpu_slug(gpu)}.json"
    choices = read(path) if args.merge else {}
    kept = len(choices)
    shipped_source = json.loads(path.read_text(encoding="utf-8")).get("source", "") if args.merge and kept else ""
    for _, found, _ in loaded:
        choices.update(found)
    source = "; ".join(origin for _, _, origin in loaded)
    merged = f" (merged over {kept} shipped choices, from: {shipped_source})" if args.merge else ""
    write(path, gpu, choices, source + merged)
    print(f"{path}: {len(choices)} choices")


if __name__ == "__main__":
    main()
