"""What a GPU stage cost: peak memory and throughput, written as JSON beside the stage's output.

Training's MFU counts the usual 6·N FLOPs a token even under LoRA: comparable across runs, not a FLOP count.
"""

from __future__ import annotations

import contextlib
import csv
import json
import platform
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

from specdraft.plumbing.atomic import atomic_path

GIB = 2**30
# Dense bf16 peaks (FLOP/s, the vendors' data sheets), matched in order against torch.cuda.get_device_name().
PEAK_BF16_FLOPS = (
    ("H200", 989.4e12), ("H100", 989.4e12), ("A100", 312e12), ("L40S", 362.05e12), ("A40", 149.7e12),
    ("RTX 4090", 165.2e12), ("RTX 3090", 71e12),
)


def peak_bf16_flops(device_name: str) -> float | None:
    for key, flops in PEAK_BF16_FLOPS:
        if key in device_name:
            return flops
    return None


def count_parameters(config) -> int:
    """Parameters of the full-precision model `config` describes (quantised layers count their weights)."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


def cap_memory(device: torch.device, memory_gib: float | None, memory_utilization: float) -> float | None:
    """Cap this process's CUDA allocator at `memory_gib` (None: `memory_utilization` of the card); the budget."""
    if device.type != "cuda":
        return memory_gib
    index = device.index if device.index is not None else torch.cuda.current_device()
    total = torch.cuda.get_device_properties(index).total_memory
    budget = memory_gib if memory_gib is not None else memory_utilization * total / GIB
    if budget * GIB > total:
        raise ValueError(f"gpu.memory_gib {memory_gib:g} exceeds the card's {total / GIB:.1f} GiB "
                         f"({torch.cuda.get_device_name(index)})")
    torch.cuda.set_per_process_memory_fraction(budget * GIB / total, index)
    return budget


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def device_record(device: torch.device) -> dict:
    """Where the figures were measured: the accelerator, its peak memory so far, host and software."""
    record = {"device": device.type, "host": socket.gethostname(), "python": platform.python_version(),
              "torch": torch.__version__, "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        index = device.index if device.index is not None else torch.cuda.current_device()
        free, total = torch.cuda.mem_get_info(index)
        record.update({
            "device_name": torch.cuda.get_device_name(index),
            "device_memory_gib": round(total / GIB, 2),
            "peak_allocated_gib": round(torch.cuda.max_memory_allocated(index) / GIB, 3),
            "peak_reserved_gib": round(torch.cuda.max_memory_reserved(index) / GIB, 3),
        })
    return record


@dataclass
class StageStats:
    """Filled in by the stage inside `measure_stage`: tokens processed, and for training N and FLOPs."""

    stage: str
    num_tokens: int = 0
    flops_per_token: float | None = None
    extra: dict = field(default_factory=dict)


def throughput(num_tokens: int, seconds: float, flops_per_token: float | None, device_name: str | None,
               num_devices: int = 1) -> dict:
    """Tokens/s and, with `flops_per_token`, the MFU of `num_devices` GPUs named `device_name` together."""
    tokens_per_second = num_tokens / seconds if seconds > 0 else None
    record = {"num_tokens": num_tokens, "seconds": round(seconds, 3),
              "tokens_per_second": None if tokens_per_second is None else round(tokens_per_second, 1)}
    if flops_per_token is not None:
        peak = peak_bf16_flops(device_name or "")
        record["flops_per_token"] = flops_per_token
        record["peak_flops"] = peak
        record["mfu"] = (round(tokens_per_second * flops_per_token / (peak * num_devices), 4)
                         if peak and tokens_per_second else None)
    return record


@contextlib.contextmanager
def measure_stage(path: str | Path, stage: str, device: torch.device) -> Iterator[StageStats]:
    """Time the block and, if it succeeds, write its JSON with the process's peak GPU memory (the job's peak)."""
    stats = StageStats(stage)
    start = time.perf_counter()
    yield stats
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    record = {"stage": stage, **device_record(device)}
    record.update(throughput(stats.num_tokens, seconds, stats.flops_per_token, record.get("device_name")))
    record.update(stats.extra)
    write_json(path, record)


def write_bench_stats(benchmark_csv: str | Path, device: torch.device, extra: dict | None = None) -> dict:
    """A finished bench run's throughput (the target alone and each k) and peak memory, to `<csv>.stats.json`."""
    with open(benchmark_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    target_seconds = {r["id"]: float(r["target_seconds"]) for r in rows}
    target_tokens = {r["id"]: int(r["target_num_new_tokens"]) for r in rows}
    record = {"stage": "bench", **device_record(device), "num_problems": len(target_seconds),
              "target": throughput(sum(target_tokens.values()), sum(target_seconds.values()), None, None)}
    for k in sorted({int(r["k"]) for r in rows}):
        mine = [r for r in rows if int(r["k"]) == k]
        record[f"speculative_k{k}"] = throughput(sum(int(r["num_new_tokens"]) for r in mine),
                                                 sum(float(r["speculative_seconds"]) for r in mine), None, None)
    record.update(extra or {})
    write_json(f"{benchmark_csv}.stats.json", record)
    return record


def write_json(path: str | Path, record: dict) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(record, indent=2) + "\n")
