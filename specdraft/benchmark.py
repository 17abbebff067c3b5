"""The bench stage: speculative decoding against the target alone, side by side on the same prompts."""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from specdraft.answers import extract_answer, is_equivalent
from specdraft.atomic import atomic_path
from specdraft.config import BenchConfig
from specdraft.decoding import autoregressive_generate, speculative_generate
from specdraft.generation import chat_prompt_ids, check_prompt_lengths
from specdraft.jsonl import read_jsonl
from specdraft.logs import Progress
from specdraft.models import (context_length, load_causal_lm, load_tokenizer, resolve_device, resolve_dtype,
                              vocab_size_of)
from specdraft.serving import serve

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchRow:
    """One problem decoded with k draft tokens, next to the target alone on the same prompt."""

    id: str
    k: int
    num_new_tokens: int
    num_proposed: int
    num_accepted: int
    num_steps: int
    acceptance_rate: float
    mean_acceptance_length: float
    accepted_per_position: str  # "a;b;c": steps whose proposal was accepted through position 1, 2, 3, ...
    target_seconds: float
    speculative_seconds: float
    speedup: float
    answer: str | None
    reference: str
    correct: bool
    matches_target: bool


def _timed(fn: Callable[[], object], device: torch.device) -> tuple[object, float]:
    """Run `fn` and return (result, seconds), synchronising the GPU before each clock read."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    result = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return result, time.perf_counter() - start


def run_benchmark(target, draft, tokenizer, records: list[dict], cfg: BenchConfig, seed: int) -> list[BenchRow]:
    """Decode every record's prompt with the target alone, then speculatively for each k, in one process."""
    device = next(target.parameters()).device
    eos = tokenizer.eos_token_id
    common = {"max_new_tokens": cfg.max_new_tokens, "temperature": cfg.temperature, "top_p": cfg.top_p,
              "eos_token_id": eos}

    def generator() -> torch.Generator:
        return torch.Generator(device=device).manual_seed(seed)

    prompts = [torch.tensor([chat_prompt_ids(tokenizer, r["messages"][:-1])], device=device) for r in records]
    # Warm-up, excluded from every timing: first-call allocations, kernel selection and (native engine) CUDA
    # graph capture, on the shortest and the longest prompt so that most attention lengths are seen.
    by_length = sorted(prompts, key=lambda p: p.shape[1])
    for input_ids in {p.shape[1]: p for p in (by_length[0], by_length[-1])}.values():
        autoregressive_generate(target, input_ids, generator=generator(), **common)
        for k in cfg.num_speculative_tokens:
            speculative_generate(target, draft, input_ids, num_speculative_tokens=k, generator=generator(), **common)

    rows = []
    progress = Progress("bench", len(records), unit="problem")
    for record, input_ids in zip(records, prompts):
        reference_ids, target_seconds = _timed(
            lambda: autoregressive_generate(target, input_ids, generator=generator(), **common), device)
        for k in cfg.num_speculative_tokens:
            out, seconds = _timed(lambda: speculative_generate(
                target, draft, input_ids, num_speculative_tokens=k, generator=generator(), **common), device)
            answer = extract_answer(tokenizer.decode(out.token_ids, skip_special_tokens=True), record["scenario"])
            rows.append(BenchRow(
                id=record["id"], k=k, num_new_tokens=len(out.token_ids),
                num_proposed=out.stats.num_proposed, num_accepted=out.stats.num_accepted,
                num_steps=out.stats.num_steps, acceptance_rate=out.stats.acceptance_rate,
                mean_acceptance_length=out.stats.mean_acceptance_length,
                accepted_per_position=";".join(map(str, out.stats.num_accepted_per_position)),
                target_seconds=target_seconds, speculative_seconds=seconds, speedup=target_seconds / seconds,
                answer=answer, reference=record["answer"],
                correct=is_equivalent(answer, record["answer"], record["scenario"]),
                matches_target=torch.equal(out.token_ids, reference_ids),
            ))
        latest = rows[-len(cfg.num_speculative_tokens):]
        log.info("%s: %s", record["id"],
                 ", ".join(f"k={r.k} accept={r.acceptance_rate:.2f} speedup={r.speedup:.2f}" for r in latest))
        progress.update(len(rows) // len(cfg.num_speculative_tokens))
    return rows


def write_rows(path: str, rows: list[BenchRow]) -> None:
    fields = list(BenchRow.__dataclass_fields__)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)


def bench(target_base: str, draft_base: str, test_path: str, out_path: str, cfg: BenchConfig, *,
          target_adapter: str | None, draft_adapter: str | None, engine: str, dtype: str, device: str,
          seed: int, engine_weights: str = "bf16") -> None:
    """Benchmark a target/draft pair (tuned when adapters are given) on a scenario's test problems."""
    if cfg.concurrency > 1:  # problems decoded many at a time: specdraft.concurrent_bench
        from specdraft.concurrent_bench import bench_concurrent

        return bench_concurrent(target_base, draft_base, test_path, out_path, cfg, target_adapter=target_adapter,
                                draft_adapter=draft_adapter, engine=engine, dtype=dtype, device=device, seed=seed,
                                engine_weights=engine_weights)
    records = read_jsonl(test_path, required=("id", "scenario", "messages", "answer"))[: cfg.num_problems]
    tokenizer = load_tokenizer(target_base)
    lengths = [len(chat_prompt_ids(tokenizer, r["messages"][:-1])) for r in records]
    context = context_length(target_base)
    check_prompt_lengths(test_path, lengths, limit=context - cfg.max_new_tokens, ids=[r["id"] for r in records],
                         reason=f"the model's context of {context} less bench.max_new_tokens {cfg.max_new_tokens}")
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    target = load_causal_lm(target_base, dtype=torch_dtype, device=dev, adapter=target_adapter)
    draft = load_causal_lm(draft_base, dtype=torch_dtype, device=dev, adapter=draft_adapter,
                           vocab_size=vocab_size_of(target_base))
    longest = max(lengths)
    target, draft = (serve(m, engine, max_seq_len=longest + cfg.max_new_tokens, weights=engine_weights)
                     for m in (target, draft))
    rows = run_benchmark(target, draft, tokenizer, records, cfg, seed)
    write_rows(out_path, rows)
    log.info("%d rows -> %s", len(rows), out_path)
