"""Render docs/rehearsal.md from the JSON the rehearsal measured: nothing in the tables is typed by hand.

    python benchmarks/rehearsal_report.py --workdir <rehearsal run dir> --mfu docs/rehearsal/train_mfu_h200.json \
        [--snakemake-benchmarks <dir of Snakemake benchmark .tsv files>] [--out docs/rehearsal.md]

Reads, from the run directory of `snakemake all merge --configfile configs/rehearsal.yaml`: every adapter's
train_stats.json, every `<output>.stats.json` (distill, bench), and the Snakemake benchmark files if given; copies
them to docs/rehearsal/ (the raw JSON beside the document) and writes the tables, with the full config.yaml
sweep's wall time extrapolated from them.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def load_json(path: Path) -> dict:
    return json.loads(path.read_text())


def merged(base: dict, over: dict) -> dict:
    """`over` merged into `base` key by key, as Snakemake merges --configfile files."""
    out = dict(base)
    for key, value in over.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def snakemake_walls(directory: Path | None) -> dict[str, float]:
    """Wall seconds per job from Snakemake `benchmark:` files, keyed '<rule>/<name>' (the path under `directory`)."""
    walls = {}
    if directory is None:
        return walls
    for path in sorted(directory.rglob("*.tsv")):
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        if rows and "s" in rows[0]:
            walls[str(path.relative_to(directory).with_suffix(""))] = float(rows[-1]["s"])
    return walls


def collect(workdir: Path) -> list[tuple[str, str, Path]]:
    """(rule, experiment/seed, stats file) of every GPU stage of the run (results/<experiment>/seed<N>/...)."""
    found = []
    for path in sorted(workdir.glob("results/*/seed*/*_adapter/train_stats.json")):
        found.append((f"train_{path.parent.name.removesuffix('_adapter')}", replicate(path.parent.parent), path))
    for path in sorted(workdir.glob("results/*/seed*/distilled.jsonl.stats.json")):
        found.append(("distill", replicate(path.parent), path))
    for path in sorted(workdir.glob("results/*/seed*/benchmark.csv.stats.json")):
        rule = "baseline" if path.parent.parent.name.startswith("untrained_") else "bench"
        found.append((rule, replicate(path.parent), path))
    return found


def replicate(seed_dir: Path) -> str:
    return f"{seed_dir.parent.name}/{seed_dir.name}"


def wall_key(rule: str, experiment: str) -> str:
    """The job's Snakemake benchmark file: the baseline's is named by scenario (baseline/<scenario>/seed<N>)."""
    return f"{rule}/{experiment.removeprefix('untrained_')}" if rule == "baseline" else f"{rule}/{experiment}"


def fmt(value, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}"


def stage_row(rule: str, experiment: str, stats: dict, wall: float | None) -> list[str]:
    if rule.startswith("train_"):
        speed = stats.get("steady") or stats.get("run") or {}
        throughput = f"{fmt(speed.get('tokens_per_second'))} tok/s, MFU {fmt(speed.get('mfu'), 3)}"
    elif rule == "distill":
        throughput = f"{fmt(stats.get('tokens_per_second'))} tok/s"
    else:
        parts = [f"target {fmt(stats['target']['tokens_per_second'])}"]
        parts += [f"{key.removeprefix('speculative_')} {fmt(value['tokens_per_second'])}"
                  for key, value in stats.items() if key.startswith("speculative_k")]
        throughput = "tok/s: " + ", ".join(parts)
    return [rule, experiment, fmt(wall), fmt(stats.get("peak_allocated_gib"), 2),
            fmt(stats.get("peak_reserved_gib"), 2), throughput]


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join([*lines, *("| " + " | ".join(r) + " |" for r in rows)])


def extrapolate(stages: list[tuple[str, str, dict, float | None]], rehearsal, full) -> tuple[list[list[str]], float]:
    """Each rule's job at the full config's counts: fixed cost (job wall minus its work) plus work scaled by
    the counts. Training scales with examples x epochs at the rehearsal's tokens per example; distill with
    problems x max_new_tokens (random weights never stop early: an upper bound); bench with problems x
    max_new_tokens x (1 + number of k)."""
    experiments = len(full.styles) * len(full.scenarios) * len(full.seeds)
    jobs = {"train_target": experiments, "distill": experiments, "train_draft": experiments, "bench": experiments,
            "baseline": len(full.scenarios) * len(full.seeds) if full.baseline.enabled else 0}
    rows, total = [], 0.0
    for rule, experiment, stats, wall in stages:
        if rule.startswith("train_"):
            section = getattr(full, rule)
            run = stats["run"]
            speed = (stats.get("steady") or run)["tokens_per_second"]
            scale = (full.data.num_train * section.epochs) / (stats["num_examples"] * stats["epochs"])
            work, full_work = run["seconds"], run["num_tokens"] * scale / speed
        elif rule == "distill":
            scale = (full.data.num_train * full.distill.max_new_tokens) / \
                (rehearsal.data.num_train * rehearsal.distill.max_new_tokens)
            work = stats["seconds"]
            full_work = stats["num_tokens"] * scale / stats["tokens_per_second"]
        else:
            seconds = stats["target"]["seconds"] + sum(v["seconds"] for k, v in stats.items()
                                                       if k.startswith("speculative_k"))
            scale = (min(full.bench.num_problems, full.data.num_test) * full.bench.max_new_tokens
                     * (1 + len(full.bench.num_speculative_tokens)) * full.bench.repeats) / \
                (min(rehearsal.bench.num_problems, rehearsal.data.num_test) * rehearsal.bench.max_new_tokens
                 * (1 + len(rehearsal.bench.num_speculative_tokens)) * rehearsal.bench.repeats)
            work, full_work = seconds, seconds * scale
        fixed = max(0.0, wall - work) if wall is not None else 0.0
        per_job = fixed + full_work
        total += per_job * jobs[rule]
        rows.append([rule, experiment, fmt(fixed), fmt(full_work), fmt(per_job), str(jobs[rule]),
                     fmt(per_job * jobs[rule] / 3600, 2)])
    return rows, total


GPU_RULES = ("train_target", "distill", "train_draft", "bench", "baseline")


def card_section(name: str, directory: Path) -> str:
    """One card's table: every GPU rule of the capped run (`benchmarks/capped_rehearsal.sh`), its wall time,
    peak memory against the budget and the plan `specdraft.plumbing.memory_budget` made before loading."""
    run = load_json(directory / "run.json")
    walls = snakemake_walls(directory / "results" / "benchmarks")
    found = {(rule, experiment): load_json(path) for rule, experiment, path in collect(directory)}
    experiments = {"baseline": "untrained_easy/seed0"}
    rows = []
    for rule in GPU_RULES:
        experiment = experiments.get(rule, "cod_easy/seed0")
        stats = found.get((rule, experiment))
        wall = walls.get(wall_key(rule, experiment))
        if stats is None:
            status = "failed (log in rehearsal/)" if (directory / "logs" / rule).exists() else "not run"
            rows.append([rule, experiment, status, fmt(wall), "–", "–", "–", "–", "–"])
            continue
        sized = stats.get("batch_size") if rule == "distill" else stats.get("concurrency")
        rows.append([rule, experiment, "done", fmt(wall), fmt(stats.get("peak_allocated_gib"), 2),
                     fmt(stats.get("peak_reserved_gib"), 2), fmt(stats.get("planned_gib"), 2),
                     fmt(stats.get("load_seconds")), fmt(sized)])
    return f"""## Under a {name} card's budget: gpu.memory_gib {run["memory_gib"]}

`{run["command"]}` on {run.get("gpu") or run["machine"]}: exit status {run["returncode"]} after {run["seconds"]} s,
at commit {run.get("commit", "unrecorded")}; on the GPU: {run.get("conditions", "unrecorded")}.
Every GPU job's allocator capped at the budget; "planned" is what the stage computed from the models' config.json
before loading (`specdraft/plumbing/memory_budget.py`: training's is a lower bound); "rows" is distill's batch or bench's
concurrency after sizing.

{table(["rule", "experiment", "status", "wall s", "peak allocated GiB", "peak reserved GiB", "planned GiB",
        "load s", "rows"], rows)}
"""


def mfu_commands(runs: list[dict], paths: list[Path]) -> str:
    lines = []
    for run, path in zip(runs, paths):
        command = "`, then `".join(run["command"]) if isinstance(run["command"], list) else run["command"]
        note = f" {run['notes']}" if run.get("notes") else ""
        lines.append(f"- [`{path.name}`](rehearsal/{path.name}): {run['conditions']['steps']} optimizer steps per "
                     f"variant; `{command}`.{note}")
    return "\n".join(lines)


def merge_section(merge: dict, name: str) -> str:
    """`benchmarks/merge_full_size.py`: the 14B merged under a card's cap, reloaded, its logits checked."""
    from specdraft.stages.merge import REFERENCE_FACTOR

    check, shards, conditions = merge["check"], merge["shard_bytes"], merge["conditions"]
    rows = [["merged vs float32 reference, max abs logit diff", fmt(check.get("merged_vs_reference"), 3)],
            ["unmerged adapter model vs float32 reference", fmt(check.get("adapter_vs_reference"), 3)],
            ["the adapter's own effect on the logits (max)", fmt(check["adapter_effect"], 3)],
            ["largest logit", fmt(check["max_abs_logit"], 3)],
            ["check", "passed" if check["passed"] else "FAILED"],
            [f"merge peak allocated GiB (cap {fmt(conditions['merge_memory_cap_gib'])})",
             fmt(merge["merge_peak_allocated_gib"], 2)],
            ["merge s / reload and check s", f"{fmt(merge['merge_seconds'])} / {fmt(merge['check_seconds'])}"],
            ["safetensors shards: count, GB", f"{len(shards)}, {sum(shards.values()) / 1e9:,.1f}"]]
    others = ", ".join(f"`{f}`" for f in check["files"] if not f.startswith("model-0"))
    return f"""## Merge at full size (`benchmarks/merge_full_size.py`)

A random LoRA (r {conditions["lora_r"]}, std {conditions["lora_std"]}) on the random {conditions["architecture"]}
in {conditions["dtype"]}, merged by the `merge` rule's code on {merge["device"]}, written, reloaded and run on
{check["num_prompts"]} prompts. bf16 rounding moves the unmerged model's logits too, so the check compares both
with a {check.get("reference_dtype", "–")} run of the same weights: the merged model passes when it is at most
{REFERENCE_FACTOR:g} times as far from it as the unmerged model. The directory holds {others} and the shards, no adapter files.
Raw: [`{name}`](rehearsal/{name}); command `{merge["command"]}`.

{table(["", "value"], rows)}

"""


def copy_card(directory: Path, raw_dir: Path, name: str) -> None:
    """The card's JSON, benchmark files and logs into docs/rehearsal/<name>/."""
    target = raw_dir / name
    if directory.resolve() == target.resolve():
        return
    for path in [*directory.rglob("*.json"), *directory.rglob("*.tsv"), *directory.rglob("*.log")]:
        if path.is_file():
            (target / path.relative_to(directory)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target / path.relative_to(directory))


def main() -> None:
    import yaml

    from specdraft.analysis.provenance import git_commit
    from specdraft.plumbing.config import load_config

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--mfu", type=Path, action="append", required=True,
                        help="benchmarks/train_mfu.py's JSON (repeat for several runs: one table)")
    parser.add_argument("--merge", type=Path, help="benchmarks/merge_full_size.py's JSON")
    parser.add_argument("--card", action="append", default=[], metavar="NAME=DIR",
                        help="a capped run's directory (benchmarks/capped_rehearsal.sh <out> NAME): a table each")
    parser.add_argument("--snakemake-benchmarks", type=Path)
    parser.add_argument("--rehearsal-config", type=Path, default=REPO / "configs/rehearsal.yaml")
    parser.add_argument("--full-config", type=Path, default=REPO / "config.yaml")
    parser.add_argument("--out", type=Path, default=REPO / "docs/rehearsal.md")
    args = parser.parse_args()

    full_raw = yaml.safe_load(args.full_config.read_text())
    full = load_config(full_raw)
    rehearsal = load_config(merged(full_raw, yaml.safe_load(args.rehearsal_config.read_text())))
    raw_dir = args.out.with_suffix("")
    raw_dir.mkdir(parents=True, exist_ok=True)
    walls = snakemake_walls(args.snakemake_benchmarks)
    if walls:
        (raw_dir / "snakemake_benchmarks.json").write_text(json.dumps(walls, indent=2) + "\n")
    stages = []
    for rule, experiment, path in collect(args.workdir):
        stats = load_json(path)
        if not path.resolve().is_relative_to(raw_dir.resolve()):  # a card's run is copied whole below
            shutil.copyfile(path, raw_dir / f"{rule}_{experiment.replace('/', '_')}.json")
        stages.append((rule, experiment, stats, walls.pop(wall_key(rule, experiment), None)))
    for path in [*args.mfu, *([args.merge] if args.merge else [])]:
        if path.resolve() != (raw_dir / path.name).resolve():
            shutil.copyfile(path, raw_dir / path.name)

    mfu_runs = [load_json(path) for path in args.mfu]
    mfu = {"results": [r for run in mfu_runs for r in run["results"]]}
    devices = {s.get("device_name") for _, _, s, _ in stages} | {r.get("device_name") for r in mfu["results"]}
    devices.discard(None)

    stage_rows = [stage_row(rule, exp, stats, wall) for rule, exp, stats, wall in stages]
    other_rows = [[name, "–", fmt(seconds), "–", "–", "wall time only (no stats file)"] for name, seconds in walls.items()
                  if not any(name == f"{rule}/{exp}" for rule, exp, _, _ in stages)]
    mfu_rows = []
    for r in mfu["results"]:
        speed = r.get("steady", {})
        mfu_rows.append([r["variant"], r["role"], f"{r['batch_size']} x {r.get('max_length', '–')}",
                         r["quantization"], "yes" if r["gradient_checkpointing"] else "no",
                         fmt(r.get("memory_gib")), "out of memory / failed" if r.get("failed") else
                         fmt(speed.get("tokens_per_second")), fmt(speed.get("mfu"), 3),
                         fmt(r.get("peak_allocated_gib"), 2), fmt(r.get("peak_reserved_gib"), 2)])
    extrapolated, total = extrapolate(stages, rehearsal, full)
    peak = next((r.get("steady", {}).get("peak_flops") for r in mfu["results"] if r.get("steady")), None)

    cards = []
    for spec in args.card:
        name, _, directory = spec.partition("=")
        copy_card(Path(directory), raw_dir, name)
        cards.append(card_section(name.removesuffix("gb") + " GB", raw_dir / name))

    text = f"""# The full-size rehearsal

Every stage's real code at the seed's shapes (Qwen2.5-14B-Instruct target, Qwen2.5-0.5B-Instruct draft) with
random weights (`models.source: random`, `configs/rehearsal.yaml`), on {", ".join(sorted(devices)) or "–"}.
Generated by `benchmarks/rehearsal_report.py` from the JSON in [`rehearsal/`](rehearsal/) at commit
{git_commit(REPO) or "unknown"}; do not edit by hand. Each run's own commit is given with it.
Random weights make accuracy and acceptance meaningless here; time and memory are what this measures.

## Per rule (rehearsal run through Snakemake)

Peak GPU memory is PyTorch's allocator peak over the job (allocated; reserved = what the caching allocator
held). Training throughput is steady state (from the end of the first optimizer step), MFU at 6·N FLOPs per
token, N = the base's parameters, against a dense bf16 peak of {fmt(peak / 1e12 if peak else None)} TFLOP/s.

{table(["rule", "experiment", "wall s", "peak allocated GiB", "peak reserved GiB", "throughput"],
       stage_rows + other_rows)}

{"".join(cards)}
## Training throughput and memory at 4 x 1024 / 8 x 1024 tokens (`benchmarks/train_mfu.py`)

The project's training path (`specdraft.stages.train.sft_lora`: TRL SFTTrainer + PEFT LoRA on all linear layers),
synthetic examples of exactly the sequence length, each variant in its own process; "cap" is
`torch.cuda.set_per_process_memory_fraction` at that many GiB (21.5: a 24 GB card).
{mfu_commands(mfu_runs, args.mfu)}

{table(["variant", "model", "batch x tokens", "base", "grad. ckpt", "cap GiB", "tokens/s", "MFU",
        "peak allocated GiB", "peak reserved GiB"], mfu_rows)}

{merge_section(load_json(args.merge), args.merge.name) if args.merge else ""}## The full `config.yaml` sweep, extrapolated

Per job: the rehearsal job's fixed cost (wall time minus its measured work: start-up, weight loading, warm-up)
plus its work scaled to the full counts (training: examples x epochs at the rehearsal's tokens per example;
distill: problems x `max_new_tokens`, every completion assumed to run to the limit; bench: problems x
`max_new_tokens` x (1 + number of k) x repeats). GSM8K examples stand in for all scenarios: MATH's are longer
([data.md](data.md)), so medium and hard train longer than this. Distill and bench are upper bounds: random
weights never stop before `max_new_tokens` (real answers are a fraction of it, [data.md](data.md)) and their
drafts are accepted at chance, so every speculative run here is slower than the target alone. Without
Snakemake benchmark files the fixed cost is counted as 0.

{table(["rule", "from", "fixed s", "work s (full counts)", "per job s", "jobs", "hours"], extrapolated)}

Total: **{total / 3600:.1f} hours** on one GPU of this kind.

## How to reproduce

```bash
bash benchmarks/h200_site.sh h200_site workflow       # the packages the H200 lacks; carry them
bash benchmarks/capped_rehearsal.sh <out> 48gb        # and 24gb: the DAG under gpu.memory_gib 44 / 21.5
python benchmarks/train_mfu.py --out <out>/train_mfu.json [--variants ...]
python benchmarks/merge_full_size.py --out <out>/merge_full_size.json --work <scratch>
python benchmarks/rehearsal_report.py --workdir <out>/48gb --snakemake-benchmarks <out>/48gb/results/benchmarks \\
    --card 24gb=<out>/24gb --card 48gb=<out>/48gb --mfu <out>/train_mfu.json --merge <out>/merge_full_size.json
```
"""
    args.out.write_text(text)
    print(f"wrote {args.out} and {raw_dir}/")


if __name__ == "__main__":
    main()
