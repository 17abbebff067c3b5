"""The bench stage: speculative decoding against the target alone, side by side on the same prompts."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from specdraft.data.answers import extract_answer, is_equivalent
from specdraft.plumbing.atomic import atomic_path
from specdraft.plumbing.config import BenchConfig, GpuConfig
from specdraft.decoding.cost_model import leviathan_speedup
from specdraft.decoding.speculative import Timeline, autoregressive_generate, speculative_generate
from specdraft.decoding.generation import chat_prompt_ids, check_prompt_lengths
from specdraft.plumbing.gpu_stats import cap_memory, write_bench_stats
from specdraft.plumbing.jsonl import read_jsonl
from specdraft.plumbing.logs import Progress
from specdraft.models.engine_choice import load_served
from specdraft.models.native_support import cache_length
from specdraft.plumbing.memory_budget import fit_rows
from specdraft.models.loading import (architecture, context_length, load_tokenizer, resolve_device, resolve_dtype,
                                     vocab_size_of)
from specdraft.stages.bench_metrics import StepCosts, latencies_ms, ratio, step_costs
from specdraft.stages.bench_repeats import generator_seed, median, timing_order
from specdraft.stages.bench_rows import BenchRow, is_truncated, write_rows

log = logging.getLogger(__name__)


def _timed(fn: Callable[[], object], device: torch.device) -> tuple[object, float, float]:
    """Run `fn` and return (result, start, seconds), synchronising the GPU before each clock read."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    result = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return result, start, time.perf_counter() - start


@dataclass(frozen=True)
class _Run:
    """One timed decoding of a problem: its output, counts and timeline readings."""

    token_ids: list[int]
    stats: object  # SpecStats; None for the target alone
    seconds: float
    ttft_ms: float
    itl_ms: float
    costs: StepCosts | None


def _same(a: _Run, b: _Run) -> bool:
    counts = (lambda r: None if r.stats is None else (r.stats.num_proposed, r.stats.num_accepted, r.stats.num_steps,
                                                      r.stats.num_accepted_per_position))
    return a.token_ids == b.token_ids and counts(a) == counts(b)


def run_benchmark(target, draft, tokenizer, records: list[dict], cfg: BenchConfig, seed: int, *,
                  enable_thinking: bool) -> tuple[list[BenchRow], int]:
    """Decode every prompt with the target alone and speculatively for each k, `cfg.repeats` times in a rotated
    order: the rows, and how many runs' output or counts differed from their first repeat."""
    device = next(target.parameters()).device
    eos = tokenizer.eos_token_id
    common = {"max_new_tokens": cfg.max_new_tokens, "temperature": cfg.temperature, "top_p": cfg.top_p,
              "eos_token_id": eos}
    ks = list(cfg.num_speculative_tokens)

    def generator(problem_index: int = 0, k: int = 0) -> torch.Generator:
        return torch.Generator(device=device).manual_seed(generator_seed(seed, problem_index, k))

    def decode(token_ids) -> str:
        return tokenizer.decode(token_ids, skip_special_tokens=True)

    def timed_run(input_ids, problem_index: int, k: int) -> _Run:
        timeline = Timeline()
        if k == 0:
            out, start, seconds = _timed(lambda: autoregressive_generate(
                target, input_ids, generator=generator(problem_index), timeline=timeline, **common), device)
            token_ids, stats, costs = out.tolist(), None, None
        else:
            out, start, seconds = _timed(lambda: speculative_generate(
                target, draft, input_ids, num_speculative_tokens=k, generator=generator(problem_index, k),
                timeline=timeline, **common), device)
            token_ids, stats, costs = out.token_ids.tolist(), out.stats, step_costs(timeline, k)
        ttft, itl = latencies_ms(start, timeline.token_times)
        return _Run(token_ids, stats, seconds, ttft, itl, costs)

    prompts = [torch.tensor([chat_prompt_ids(tokenizer, r["messages"][:-1], enable_thinking=enable_thinking)],
                            device=device) for r in records]
    warm_up(target, draft, prompts, ks, generator, common)
    shapes_before = graph_shapes_met(target) + graph_shapes_met(draft)

    rows, mismatches = [], 0
    progress = Progress("bench", len(records), unit="problem")
    runs_k = [0] + ks  # 0: the target alone
    for i, (record, input_ids) in enumerate(zip(records, prompts)):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        timings: dict[int, list[_Run]] = {k: [] for k in runs_k}
        for repeat in range(cfg.repeats):
            for j in timing_order(len(runs_k), i, repeat):
                timings[runs_k[j]].append(timed_run(input_ids, i, runs_k[j]))
        for k, runs in timings.items():
            different = sum(not _same(run, runs[0]) for run in runs[1:])
            if different:
                log.warning("%s, %s: %d of %d repeats decoded other tokens or counts than the first; the first's "
                            "are kept", record["id"], f"k={k}" if k else "target alone", different, len(runs))
            mismatches += different
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else math.nan
        reference, target_runs = timings[0][0], timings[0]
        target_seconds = median(r.seconds for r in target_runs)
        target_ttft, target_itl = median(r.ttft_ms for r in target_runs), median(r.itl_ms for r in target_runs)
        target_text = decode(reference.token_ids)
        target_correct = is_equivalent(extract_answer(target_text, record["scenario"]), record["answer"],
                                       record["scenario"])
        target_rate = len(reference.token_ids) / target_seconds
        for k in ks:
            first, runs = timings[k][0], timings[k]
            stats = first.stats
            seconds = median(r.seconds for r in runs)
            draft_ms, verification_ms = (median(r.costs.draft_token_ms for r in runs),
                                         median(r.costs.verification_ms for r in runs))
            c, v = ratio(draft_ms, target_itl), ratio(verification_ms, target_itl)
            text = decode(first.token_ids)
            answer = extract_answer(text, record["scenario"])
            rate = len(first.token_ids) / seconds
            rows.append(BenchRow(
                id=record["id"], k=k, num_new_tokens=len(first.token_ids),
                target_num_new_tokens=len(reference.token_ids),
                num_proposed=stats.num_proposed, num_accepted=stats.num_accepted,
                num_steps=stats.num_steps, acceptance_rate=stats.acceptance_rate,
                mean_acceptance_length=stats.mean_acceptance_length,
                accepted_per_position=";".join(map(str, stats.num_accepted_per_position)),
                target_seconds=target_seconds, speculative_seconds=seconds,
                target_tokens_per_s=target_rate, speculative_tokens_per_s=rate, speedup=rate / target_rate,
                ttft_ms=median(r.ttft_ms for r in runs), itl_ms=median(r.itl_ms for r in runs),
                target_ttft_ms=target_ttft, target_itl_ms=target_itl,
                draft_token_ms=draft_ms, verification_ms=verification_ms,
                draft_cost=c, verification_cost=v, num_rejected_steps=first.costs.num_rejected_steps,
                alpha=first.costs.alpha, predicted_speedup=leviathan_speedup(first.costs.alpha, k, c),
                predicted_speedup_steps=ratio(stats.num_accepted + stats.num_steps,
                                               c * stats.num_proposed + v * stats.num_steps),
                peak_memory_gib=peak, answer=answer, reference=record["answer"],
                correct=is_equivalent(answer, record["answer"], record["scenario"]),
                target_correct=target_correct, matches_target=first.token_ids == reference.token_ids,
                truncated=is_truncated(first.token_ids, text, max_new_tokens=cfg.max_new_tokens, eos_token_id=eos),
                target_truncated=is_truncated(reference.token_ids, target_text, max_new_tokens=cfg.max_new_tokens,
                                              eos_token_id=eos),
                repeats=cfg.repeats,
            ))
        latest = rows[-len(ks):]
        log.info("%s: %s", record["id"],
                 ", ".join(f"k={r.k} accept={r.acceptance_rate:.2f} speedup={r.speedup:.2f} "
                           f"(predicted {r.predicted_speedup_steps:.2f})" for r in latest))
        progress.update(i + 1)
    new_shapes = graph_shapes_met(target) + graph_shapes_met(draft) - shapes_before
    if new_shapes:
        log.warning("%d CUDA-graph shapes were first met inside the timings (captured there on a GPU)", new_shapes)
    return rows, mismatches


def graph_shapes_met(model) -> int:
    """Graph-sized step shapes the native engine's batch-1 runner has met (0 for a Hugging Face model)."""
    return getattr(model, "num_graph_shapes", 0)


def warm_up(target, draft, prompts: list[torch.Tensor], num_speculative_tokens, generator, common: dict) -> None:
    """Untimed: capture every CUDA graph the timed runs can replay, then decode the shortest and the longest prompt
    once each way, so first-call allocations and kernel selection stay out of the timings."""
    from specdraft.models.load_timing import log_kernel_tuning, phase

    device = next(target.parameters()).device
    for name, model in (("target", target), ("draft", draft)):
        if hasattr(model, "warm_up"):
            with phase(name, "warm-up: CUDA graph capture", device):
                model.warm_up(list(num_speculative_tokens), sorted({p.shape[1] for p in prompts}))
    by_length = sorted(prompts, key=lambda p: p.shape[1])
    with phase("target and draft", "warm-up: decoding", device):
        for input_ids in {p.shape[1]: p for p in (by_length[0], by_length[-1])}.values():
            autoregressive_generate(target, input_ids, generator=generator(), **common)
            for k in num_speculative_tokens:
                speculative_generate(target, draft, input_ids, num_speculative_tokens=k, generator=generator(),
                                     **common)
    log_kernel_tuning("bench warm-up")


BENCH_KEYS = ("engine_weights (int8, int4)", "bench.concurrency", "bench.max_new_tokens",
              "bench.num_speculative_tokens")
RUN_NAME = "benchmark_run.json"


def run_conditions(target, cfg: BenchConfig, *, engine_weights: str, seed: int) -> dict:
    """What a bench run measured under, read from the served target itself where it can be."""
    from specdraft.engine import Engine

    device = next(target.parameters()).device
    native = isinstance(target, Engine)
    return {
        "concurrency": cfg.concurrency, "num_speculative_tokens": list(cfg.num_speculative_tokens),
        "engine": "native" if native else "hf",
        "engine_weights": engine_weights if native else "model_dtype",  # Hugging Face models run in their dtype
        "dtype": str(target.dtype).removeprefix("torch."),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "repeats": cfg.repeats, "max_new_tokens": cfg.max_new_tokens, "temperature": cfg.temperature,
        "seed": seed,
    }


def write_run(path: str | Path, conditions: dict, throughput: dict | None, repeat_mismatches: int) -> None:
    """benchmark_run.json: the run's conditions, throughput metrics (concurrency > 1) and repeat mismatches."""
    record = {"conditions": conditions, "throughput": throughput, "repeat_mismatches": repeat_mismatches}
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(record, indent=1) + "\n")


def bench(target_base: str, draft_base: str, test_path: str, out_path: str, cfg: BenchConfig, *,
          target_adapter: str | None, draft_adapter: str | None, engine: str, dtype: str, device: str,
          seed: int, enable_thinking: bool, gpu: GpuConfig, engine_weights: str) -> None:
    """Benchmark a target/draft pair (tuned when adapters are given) on a scenario's test problems, one or
    `cfg.concurrency` at a time: benchmark.csv and, beside it, benchmark_run.json."""
    if cfg.concurrency > 1 and engine == "hf":
        raise ValueError(f"bench.concurrency {cfg.concurrency} runs on the native engine; set engine to 'auto' or "
                         "'native' (or bench.concurrency to 1)")
    records = read_jsonl(test_path, required=("id", "scenario", "messages", "answer"))[: cfg.num_problems]
    tokenizer = load_tokenizer(target_base)
    lengths = [len(chat_prompt_ids(tokenizer, r["messages"][:-1], enable_thinking=enable_thinking)) for r in records]
    context = context_length(target_base)
    check_prompt_lengths(test_path, lengths, limit=context - cfg.max_new_tokens, ids=[r["id"] for r in records],
                         reason=f"the model's context of {context} less bench.max_new_tokens {cfg.max_new_tokens}")
    dev = resolve_device(device)
    max_seq_len, rows = max(lengths) + cfg.max_new_tokens, 1
    if cfg.concurrency > 1:
        # A row runs up to k + 1 positions past max_new_tokens before it is cut; the draft keeps one more column.
        max_seq_len, rows = max_seq_len + max(cfg.num_speculative_tokens) + 2, cfg.concurrency
    budget = cap_memory(dev, gpu.memory_gib, gpu.memory_utilization)
    vocab_size = vocab_size_of(target_base)
    pair = [(architecture(target_base), engine_weights), (architecture(draft_base, vocab_size), engine_weights)]
    rows, need = fit_rows("bench", pair, budget_gib=budget, max_rows=rows, max_seq_len=cache_length(max_seq_len),
                          prompt_len=max(lengths), dtype_bytes=resolve_dtype(dtype, dev).itemsize,
                          keys=BENCH_KEYS, utilization=gpu.memory_utilization)
    served = dict(engine=engine, weights=engine_weights, dtype=dtype, device=device, max_seq_len=max_seq_len,
                  max_batch_size=rows)
    start = time.perf_counter()
    target = load_served(target_base, adapter=target_adapter, **served)
    draft = load_served(draft_base, adapter=draft_adapter, vocab_size=vocab_size, **served)
    load_seconds = time.perf_counter() - start
    cfg, throughput = replace(cfg, concurrency=rows if cfg.concurrency > 1 else 1), None
    if cfg.concurrency > 1:
        from specdraft.stages.bench_concurrent import check_concurrent, run_concurrent_benchmark

        check_concurrent(target, cfg)
        bench_rows, throughput, mismatches = run_concurrent_benchmark(target, draft, tokenizer, records, cfg, seed,
                                                                       enable_thinking=enable_thinking)
    else:
        bench_rows, mismatches = run_benchmark(target, draft, tokenizer, records, cfg, seed,
                                               enable_thinking=enable_thinking)
    write_run(Path(out_path).with_name(RUN_NAME), run_conditions(target, cfg, engine_weights=engine_weights,
                                                                  seed=seed), throughput, mismatches)
    write_rows(out_path, bench_rows)
    write_bench_stats(out_path, dev, {"load_seconds": round(load_seconds, 2), "concurrency": rows,
                                      "memory_budget_gib": budget, "planned_gib": round(need.gib, 3)})
    log.info("%d problems -> %s; conditions -> %s", len(records), out_path, RUN_NAME)
