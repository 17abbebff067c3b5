"""The bench stage at `bench.concurrency` > 1: problems decoded that many at a time, as a server would.

The target alone and speculative decoding (each k) run the same problems through the same scheduler
(`autoregressive_generate_batch`, `speculative_generate_batch`: `concurrency` rows, a finished row handed
the next problem), one after the other in one process, after an untimed warm-up. Per problem, the rows of
benchmark.csv are those of the batch-1 bench, except that `target_seconds` and `speculative_seconds` are
the problem's latency inside its batched run (admission to last token). Per run,
`benchmark_concurrency.json` beside benchmark.csv holds what a server reports: throughput (new tokens of
all problems / wall time), time to first token (admission to first token: its prefill and first step)
and inter-token latency ((last token - first token) / (tokens - 1), per problem).
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import time
from pathlib import Path

import torch

from specdraft.answers import extract_answer, is_equivalent
from specdraft.atomic import atomic_path
from specdraft.bench import BenchRow, write_rows
from specdraft.config import BenchConfig
from specdraft.decoding import BatchOutput, autoregressive_generate_batch, speculative_generate_batch
from specdraft.engine import Engine
from specdraft.generation import chat_prompt_ids

log = logging.getLogger(__name__)

METRICS_NAME = "benchmark_concurrency.json"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def request_latencies(output: BatchOutput) -> tuple[float, float]:
    """One request's time to first token and mean time between its later tokens (NaN for one token), in s."""
    timing = output.timing
    n = len(output.token_ids)
    itl = (timing.finished_s - timing.first_token_s) / (n - 1) if n > 1 else math.nan
    return timing.first_token_s - timing.admitted_s, itl


def run_metrics(outputs: list[BatchOutput], wall_seconds: float) -> dict:
    """Throughput, time to first token and inter-token latency of one batched run."""
    latencies = [request_latencies(o) for o in outputs]
    ttft = [t for t, _ in latencies]
    itl = [i for (_, i), o in zip(latencies, outputs) if len(o.token_ids) > 1]
    num_tokens = sum(len(o.token_ids) for o in outputs)
    proposed = sum(o.stats.num_proposed for o in outputs)
    accepted = sum(o.stats.num_accepted for o in outputs)
    steps = sum(o.stats.num_steps for o in outputs)
    return {
        "wall_seconds": wall_seconds, "num_new_tokens": num_tokens, "throughput_tok_s": num_tokens / wall_seconds,
        "ttft_mean_s": statistics.fmean(ttft), "ttft_median_s": statistics.median(ttft),
        "itl_mean_s": statistics.fmean(itl) if itl else None, "itl_median_s": statistics.median(itl) if itl else None,
        "queue_mean_s": statistics.fmean(o.timing.admitted_s for o in outputs),
        "acceptance_rate": accepted / proposed if proposed else None,
        "mean_acceptance_length": 1 + accepted / steps if proposed else None,
    }


def run_concurrent_benchmark(target, draft, tokenizer, records: list[dict], cfg: BenchConfig,
                             seed: int) -> tuple[list[BenchRow], dict]:
    """Decode every record `cfg.concurrency` at a time with the target alone, then speculatively for each
    k. Returns the per-problem rows and the per-run metrics."""
    device = target.device
    prompts = [chat_prompt_ids(tokenizer, r["messages"][:-1]) for r in records]
    common = {"max_new_tokens": cfg.max_new_tokens, "temperature": cfg.temperature, "top_p": cfg.top_p,
              "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id,
              "concurrency": cfg.concurrency}

    def plain(batch):
        return autoregressive_generate_batch(target, batch, generator=torch.Generator(device).manual_seed(seed),
                                             **common)

    def speculative(batch, k):
        return speculative_generate_batch(target, draft, batch, num_speculative_tokens=k,
                                          generator=torch.Generator(device).manual_seed(seed), **common)

    # Warm-up, untimed: as many rows as the timed runs use, the shortest and the longest prompt, so that
    # graph capture for the batch's shapes and most attention lengths stays out of the timings.
    by_length = sorted(prompts, key=len)
    warm = [(by_length[0], by_length[-1])[i % 2] for i in range(min(cfg.concurrency, len(prompts)))]
    plain(warm)
    for k in cfg.num_speculative_tokens:
        speculative(warm, k)

    def timed(fn):
        _sync(device)
        start = time.perf_counter()
        outputs = fn()
        _sync(device)
        return outputs, time.perf_counter() - start

    references, seconds = timed(lambda: plain(prompts))
    metrics = {"concurrency": cfg.concurrency, "num_problems": len(records), "max_new_tokens": cfg.max_new_tokens,
               "temperature": cfg.temperature, "top_p": cfg.top_p, "device": str(device), "dtype": str(target.dtype),
               "torch": torch.__version__, "runs": {"target": run_metrics(references, seconds)}}
    if device.type == "cuda":
        metrics["gpu"] = torch.cuda.get_device_name(device)
    speculative_outputs = {}
    for k in cfg.num_speculative_tokens:
        outputs, seconds = timed(lambda: speculative(prompts, k))
        run = run_metrics(outputs, seconds)
        run["throughput_speedup"] = run["throughput_tok_s"] / metrics["runs"]["target"]["throughput_tok_s"]
        metrics["runs"][f"k{k}"], speculative_outputs[k] = run, outputs
        log.info("k=%d: %.1f tok/s (target alone %.1f), acceptance %.2f", k, run["throughput_tok_s"],
                 metrics["runs"]["target"]["throughput_tok_s"], run["acceptance_rate"])
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else math.nan
    rows = []
    for i, (record, ref) in enumerate(zip(records, references)):
        target_seconds = ref.timing.finished_s - ref.timing.admitted_s
        target_ttft, target_itl = (1000 * t for t in request_latencies(ref))
        target_rate = len(ref.token_ids) / target_seconds
        target_answer = extract_answer(tokenizer.decode(ref.token_ids, skip_special_tokens=True), record["scenario"])
        for k in cfg.num_speculative_tokens:
            out = speculative_outputs[k][i]
            answer = extract_answer(tokenizer.decode(out.token_ids, skip_special_tokens=True), record["scenario"])
            seconds = out.timing.finished_s - out.timing.admitted_s
            ttft, itl = (1000 * t for t in request_latencies(out))
            rate = len(out.token_ids) / seconds
            # Steps that stopped at a rejection: all but those accepted through the last position (a step near
            # max_new_tokens proposes fewer, so this can count one full acceptance as a rejection).
            per_position = out.stats.num_accepted_per_position
            rejected = out.stats.num_steps - (per_position[-1] if per_position else 0)
            accepted = out.stats.num_accepted
            alpha = accepted / (accepted + rejected) if accepted + rejected else math.nan
            # Per-step costs (c, verification) are a batch-1 measurement: in a batch every row shares each step.
            rows.append(BenchRow(
                id=record["id"], k=k, num_new_tokens=len(out.token_ids), target_num_new_tokens=len(ref.token_ids),
                num_proposed=out.stats.num_proposed, num_accepted=out.stats.num_accepted,
                num_steps=out.stats.num_steps, acceptance_rate=out.stats.acceptance_rate,
                mean_acceptance_length=out.stats.mean_acceptance_length,
                accepted_per_position=";".join(map(str, out.stats.num_accepted_per_position)),
                target_seconds=target_seconds, speculative_seconds=seconds,
                target_tokens_per_s=target_rate, speculative_tokens_per_s=rate, speedup=rate / target_rate,
                ttft_ms=ttft, itl_ms=itl, target_ttft_ms=target_ttft, target_itl_ms=target_itl,
                draft_token_ms=math.nan, verification_ms=math.nan, draft_cost=math.nan, verification_cost=math.nan,
                num_rejected_steps=rejected, alpha=alpha, predicted_speedup=math.nan, predicted_speedup_steps=math.nan,
                peak_memory_gib=peak, answer=answer, reference=record["answer"],
                correct=is_equivalent(answer, record["answer"], record["scenario"]),
                target_correct=is_equivalent(target_answer, record["answer"], record["scenario"]),
                matches_target=torch.equal(out.token_ids, ref.token_ids),
            ))
    return rows, metrics


def bench_concurrent(target, draft, tokenizer, records: list[dict], out_path: str, cfg: BenchConfig, *,
                     seed: int) -> None:
    """The bench stage at cfg.concurrency > 1, on a served target/draft pair (`specdraft.bench.bench` loads,
    checks and serves them, caches sized for cfg.concurrency rows): benchmark.csv, and
    benchmark_concurrency.json beside it."""
    if not isinstance(target, Engine):
        raise ValueError(f"bench.concurrency {cfg.concurrency} runs on the native engine, which does not implement "
                         f"{target.config.model_type!r} models; set bench.concurrency to 1")
    rows, metrics = run_concurrent_benchmark(target, draft, tokenizer, records, cfg, seed)
    with atomic_path(Path(out_path).with_name(METRICS_NAME)) as tmp:
        tmp.write_text(json.dumps(metrics, indent=1))
    write_rows(out_path, rows)
    log.info("%d rows -> %s; per-run metrics -> %s", len(rows), out_path, METRICS_NAME)
