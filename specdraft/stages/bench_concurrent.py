"""The bench stage at `bench.concurrency` > 1: problems decoded that many at a time, as a server would, the target
alone and each k through the same scheduler. Rows are the batch-1 bench's, with each problem's latency in its batch;
benchmark_run.json's `throughput` holds what a server reports, medians over the repeats."""

from __future__ import annotations

import logging
import math
import statistics
import time

import torch

from specdraft.data.answers import extract_answer, is_equivalent
from specdraft.stages.bench_rows import BenchRow, is_truncated
from specdraft.plumbing.config import BenchConfig
from specdraft.decoding.batched import BatchOutput, autoregressive_generate_batch, speculative_generate_batch
from specdraft.engine import Engine
from specdraft.decoding.generation import chat_prompt_ids
from specdraft.stages.bench_repeats import generator_seed, median, timing_order

log = logging.getLogger(__name__)


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


def median_metrics(repeats: list[dict]) -> dict:
    """One run's metrics over its repeats: the median of each figure (None where a repeat has none)."""
    merged = {}
    for key in repeats[0]:
        values = [r[key] for r in repeats]
        merged[key] = None if None in values else median(values)
    merged["wall_seconds_repeats"] = [r["wall_seconds"] for r in repeats]
    return merged


def _same_outputs(a: list[BatchOutput], b: list[BatchOutput]) -> int:
    """Problems whose tokens or counts differ between two repeats of a run."""
    def key(o):
        s = o.stats
        return o.token_ids.tolist(), s.num_proposed, s.num_accepted, s.num_steps, s.num_accepted_per_position
    return sum(key(x) != key(y) for x, y in zip(a, b))


def run_concurrent_benchmark(target, draft, tokenizer, records: list[dict], cfg: BenchConfig, seed: int, *,
                             enable_thinking: bool) -> tuple[list[BenchRow], dict, int]:
    """Decode every record `cfg.concurrency` at a time, target alone and each k, `cfg.repeats` times: the rows,
    the per-run metrics, and how many problem runs decoded other tokens or counts than their first repeat."""
    device = target.device
    prompts = [chat_prompt_ids(tokenizer, r["messages"][:-1], enable_thinking=enable_thinking) for r in records]
    eos = tokenizer.eos_token_id
    common = {"max_new_tokens": cfg.max_new_tokens, "temperature": cfg.temperature, "top_p": cfg.top_p,
              "eos_token_id": eos, "pad_token_id": tokenizer.pad_token_id,
              "concurrency": cfg.concurrency}
    ks = list(cfg.num_speculative_tokens)

    def generator(k: int) -> torch.Generator:
        return torch.Generator(device).manual_seed(generator_seed(seed, 0, k))

    def decoded(batch, k):
        if k == 0:
            return autoregressive_generate_batch(target, batch, generator=generator(0), **common)
        return speculative_generate_batch(target, draft, batch, num_speculative_tokens=k, generator=generator(k),
                                          **common)

    # Untimed warm-up at the timed batch size and prompt extremes: graph capture stays out of the timings.
    by_length = sorted(prompts, key=len)
    warm = [(by_length[0], by_length[-1])[i % 2] for i in range(min(cfg.concurrency, len(prompts)))]
    for k in [0] + ks:
        decoded(warm, k)

    def timed(k):
        _sync(device)
        start = time.perf_counter()
        outputs = decoded(prompts, k)
        _sync(device)
        return outputs, time.perf_counter() - start

    runs_k = [0] + ks  # 0: the target alone
    outputs: dict[int, list[list[BatchOutput]]] = {k: [] for k in runs_k}
    metrics_by_repeat: dict[int, list[dict]] = {k: [] for k in runs_k}
    for repeat in range(cfg.repeats):
        for j in timing_order(len(runs_k), 0, repeat):
            k = runs_k[j]
            run_outputs, seconds = timed(k)
            outputs[k].append(run_outputs)
            metrics_by_repeat[k].append(run_metrics(run_outputs, seconds))
    mismatches = sum(_same_outputs(outputs[k][0], later) for k in runs_k for later in outputs[k][1:])
    if mismatches:
        log.warning("%d problem runs decoded other tokens or counts in a later repeat; the first's are kept",
                    mismatches)
    metrics = {"concurrency": cfg.concurrency, "num_problems": len(records), "max_new_tokens": cfg.max_new_tokens,
               "temperature": cfg.temperature, "top_p": cfg.top_p, "device": str(device), "dtype": str(target.dtype),
               "torch": torch.__version__, "repeats": cfg.repeats,
               "runs": {"target": median_metrics(metrics_by_repeat[0])}}
    if device.type == "cuda":
        metrics["gpu"] = torch.cuda.get_device_name(device)
    for k in ks:
        run = median_metrics(metrics_by_repeat[k])
        run["throughput_speedup"] = run["throughput_tok_s"] / metrics["runs"]["target"]["throughput_tok_s"]
        metrics["runs"][f"k{k}"] = run
        log.info("k=%d: %.1f tok/s (target alone %.1f), acceptance %.2f", k, run["throughput_tok_s"],
                 metrics["runs"]["target"]["throughput_tok_s"], run["acceptance_rate"])
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else math.nan

    def latency(k: int, i: int) -> tuple[float, float, float]:
        """(seconds, TTFT ms, ITL ms) of problem i in run k: medians over the repeats."""
        per_repeat = [(o[i].timing.finished_s - o[i].timing.admitted_s, *request_latencies(o[i])) for o in outputs[k]]
        return (median(r[0] for r in per_repeat), 1000 * median(r[1] for r in per_repeat),
                1000 * median(r[2] for r in per_repeat))

    rows = []
    for i, record in enumerate(records):
        ref = outputs[0][0][i]
        target_seconds, target_ttft, target_itl = latency(0, i)
        target_rate = len(ref.token_ids) / target_seconds
        target_text = tokenizer.decode(ref.token_ids, skip_special_tokens=True)
        target_answer = extract_answer(target_text, record["scenario"])
        for k in ks:
            out = outputs[k][0][i]
            text = tokenizer.decode(out.token_ids, skip_special_tokens=True)
            answer = extract_answer(text, record["scenario"])
            seconds, ttft, itl = latency(k, i)
            rate = len(out.token_ids) / seconds
            # Rejected steps: all but those accepted through the last position (a shorter last step may be miscounted).
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
                truncated=is_truncated(out.token_ids.tolist(), text, max_new_tokens=cfg.max_new_tokens,
                                       eos_token_id=eos),
                target_truncated=is_truncated(ref.token_ids.tolist(), target_text, max_new_tokens=cfg.max_new_tokens,
                                              eos_token_id=eos),
                repeats=cfg.repeats,
            ))
    return rows, metrics, mismatches


def check_concurrent(target, cfg: BenchConfig) -> None:
    """Batched decoding needs the native engine: say so before anything is decoded."""
    if not isinstance(target, Engine):
        raise ValueError(f"bench.concurrency {cfg.concurrency} runs on the native engine, which does not implement "
                         f"{target.config.model_type!r} models; set bench.concurrency to 1")
