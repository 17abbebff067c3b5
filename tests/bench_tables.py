"""benchmark.csv rows and benchmark_run.json records as the bench stage writes them, for the summary's tests."""

from __future__ import annotations

import csv
import json
import math


def bench_row(id, k, proposed, accepted, steps, target_s, spec_s, tokens, correct, *, seed=0, target_tokens=None,
              rejected=1, matches=True, truncated=False, target_truncated=False, repeats=3) -> dict:
    target_tokens = tokens if target_tokens is None else target_tokens
    return {
        "seed": seed, "id": id, "k": k, "num_new_tokens": tokens, "target_num_new_tokens": target_tokens,
        "num_proposed": proposed, "num_accepted": accepted, "num_steps": steps, "acceptance_rate": accepted / proposed,
        "mean_acceptance_length": 1 + accepted / steps, "accepted_per_position": "", "target_seconds": target_s,
        "speculative_seconds": spec_s, "target_tokens_per_s": target_tokens / target_s,
        "speculative_tokens_per_s": tokens / spec_s, "speedup": (tokens / spec_s) / (target_tokens / target_s),
        "ttft_ms": 5.0, "itl_ms": 1.0, "target_ttft_ms": 4.0, "target_itl_ms": 2.0, "draft_token_ms": 0.2,
        "verification_ms": 2.4, "draft_cost": 0.1, "verification_cost": 1.2, "num_rejected_steps": rejected,
        "alpha": accepted / (accepted + rejected), "predicted_speedup": 1.0, "predicted_speedup_steps": 1.0,
        "peak_memory_gib": math.nan, "answer": "1", "reference": "1", "correct": correct, "target_correct": correct,
        "matches_target": matches, "truncated": truncated, "target_truncated": target_truncated, "repeats": repeats,
    }


def write_benchmark(path, rows: list[dict]) -> str:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return str(path)


def conditions(seed: int, *, concurrency=1, ks=(2, 4), weights="model_dtype", dtype="float32", device="cpu") -> dict:
    return {"concurrency": concurrency, "num_speculative_tokens": list(ks), "engine": "native",
            "engine_weights": weights, "dtype": dtype, "device_name": device, "repeats": 3, "max_new_tokens": 64,
            "temperature": 0.0, "seed": seed}


def write_run(path, seeds, *, throughput=None, **kwargs) -> str:
    """benchmark_run.json for `seeds`; `throughput` maps a seed to its batched run's metrics (None: batch 1)."""
    record = {"seeds": {str(s): {"conditions": conditions(s, **kwargs), "throughput": (throughput or {}).get(s)}
                        for s in seeds}}
    with open(path, "w") as f:
        json.dump(record, f)
    return str(path)


def batched_metrics(target_tok_s: float, speculative_tok_s: dict[int, float]) -> dict:
    """bench_concurrent.run_metrics' record: the target alone's run and one per k."""
    runs = {"target": {"wall_seconds": 1.0, "num_new_tokens": 100, "throughput_tok_s": target_tok_s}}
    for k, rate in speculative_tok_s.items():
        runs[f"k{k}"] = {"wall_seconds": 1.0, "num_new_tokens": 100, "throughput_tok_s": rate,
                         "throughput_speedup": rate / target_tok_s}
    return {"concurrency": 16, "num_problems": 2, "runs": runs}
