"""Summarise one rehearsal run of benchmarks/multi_gpu_sweep.sh: wall time, the GPU each job's log names, and what
nvidia-smi sampled during the run (each GPU's busy share, the samples with every GPU busy, which processes ran
where), as one JSON record.

    python benchmarks/gpu_sampling.py --dir OUT/rehearsal_gpu2 --gpus 2 --wall 312.4 --exit-code 0 \
        --command "..." --out OUT/rehearsal_gpu2.json

Reads from --dir: gpus.csv (`nvidia-smi --query-gpu=timestamp,index,uuid,utilization.gpu,memory.used
--format=csv,noheader,nounits -l 2`), apps.csv (`--query-compute-apps=timestamp,gpu_uuid,pid,used_memory`),
nvidia_smi_L.txt, logs/ (the run's Snakemake logs), snakemake_benchmarks/ (the rules' benchmark .tsv files).
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import re
from collections import defaultdict
from pathlib import Path

from rehearsal_report import snakemake_walls  # benchmarks/ is this script's directory, first on sys.path

DEVICE_LINE = re.compile(r"holds GPU|SLURM job|device pool is off")


def read_csv(path: Path) -> list[list[str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [[cell.strip() for cell in row] for row in csv.reader(f) if row]


def gpu_samples(rows: list[list[str]]) -> dict:
    """Per GPU: samples, busy samples (utilisation > 0), mean utilisation, peak memory; and the sample times at
    which every GPU was busy at once."""
    per_gpu, busy_at = defaultdict(list), defaultdict(set)
    for timestamp, index, uuid, utilization, memory in (r[:5] for r in rows if len(r) >= 5):
        util = float(utilization) if utilization.replace(".", "").isdigit() else 0.0
        per_gpu[index].append((util, float(memory) if memory.replace(".", "").isdigit() else 0.0, uuid))
        if util > 0:
            busy_at[timestamp[:19]].add(index)  # samples of one round share the second
    gpus = {index: {"uuid": samples[0][2], "samples": len(samples), "busy_samples": sum(u > 0 for u, _, _ in samples),
                    "mean_utilization_pct": round(sum(u for u, _, _ in samples) / len(samples), 1),
                    "peak_memory_mib": max(m for _, m, _ in samples)} for index, samples in sorted(per_gpu.items())}
    rounds = {r[0][:19] for r in rows if r}
    return {"per_gpu": gpus, "rounds": len(rounds),
            "rounds_with_every_gpu_busy": sum(len(busy_at[t]) == len(gpus) for t in rounds) if gpus else 0}


def app_samples(rows: list[list[str]], uuid_to_index: dict[str, str]) -> dict:
    """Which processes nvidia-smi saw on each GPU, and in how many sample rounds distinct processes used
    different GPUs at once."""
    pids, at = defaultdict(set), defaultdict(dict)
    for timestamp, uuid, pid in (r[:3] for r in rows if len(r) >= 3):
        index = uuid_to_index.get(uuid, uuid)
        pids[index].add(pid)
        at[timestamp[:19]].setdefault(index, set()).add(pid)
    side_by_side = sum(1 for gpus in at.values() if len(gpus) > 1 and len(set().union(*gpus.values())) > 1)
    return {"pids_per_gpu": {index: sorted(p) for index, p in sorted(pids.items())},
            "rounds_with_processes_on_several_gpus": side_by_side}


def device_lines(logs: Path) -> dict[str, str | None]:
    """Each job log's line naming its GPU(s), or None where the log has none (a rule without GPUs)."""
    found = {}
    for path in sorted(logs.rglob("*.log")):
        line = next((line.strip() for line in path.read_text(errors="replace").splitlines()
                     if DEVICE_LINE.search(line)), None)
        found[str(path.relative_to(logs))] = line
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--gpus", type=int, required=True, help="the run's --resources gpu=")
    parser.add_argument("--wall", type=float, required=True, help="seconds the Snakemake command took")
    parser.add_argument("--exit-code", type=int, required=True)
    parser.add_argument("--command", required=True)
    parser.add_argument("--commit", default=None)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    listing = (args.dir / "nvidia_smi_L.txt").read_text() if (args.dir / "nvidia_smi_L.txt").is_file() else ""
    uuid_to_index = {m[2]: m[1] for m in re.finditer(r"GPU (\d+): .+? \(UUID: ([^)]+)\)", listing)}
    lines = device_lines(args.dir / "logs")
    record = {
        "command": args.command, "commit": args.commit, "machine": platform.node(), "gpus_listed": listing.splitlines(),
        "conditions": {"resources_gpu": args.gpus, "sampling": "nvidia-smi every 2 s"},
        "exit_code": args.exit_code, "wall_seconds": round(args.wall, 1),
        "job_devices": lines,
        "gpu_samples": gpu_samples(read_csv(args.dir / "gpus.csv")),
        "app_samples": app_samples(read_csv(args.dir / "apps.csv"), uuid_to_index),
        "snakemake_job_seconds": snakemake_walls(args.dir / "snakemake_benchmarks"),
    }
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    held = [line for line in lines.values() if line and "holds GPU" in line]
    print(f"gpu={args.gpus}: {record['wall_seconds']} s, exit code {args.exit_code}, {len(held)} job logs name a GPU, "
          f"{record['gpu_samples']['rounds_with_every_gpu_busy']} of {record['gpu_samples']['rounds']} samples with "
          f"every GPU busy")


if __name__ == "__main__":
    main()
