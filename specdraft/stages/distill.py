"""The distill stage: the tuned target answers the training problems; its completions train the draft."""

from __future__ import annotations

import logging
import time

from specdraft.data.answers import extract_answer, is_equivalent
from specdraft.plumbing.config import DistillConfig, GpuConfig
from specdraft.decoding.generation import chat_prompt_ids, check_prompt_lengths, generate_batched
from specdraft.plumbing.gpu_stats import cap_memory, measure_stage
from specdraft.plumbing.jsonl import iter_jsonl, write_jsonl
from specdraft.models.load_timing import log_kernel_tuning
from specdraft.models.engine_choice import load_served
from specdraft.models.native_support import cache_length
from specdraft.plumbing.memory_budget import fit_rows
from specdraft.models.loading import architecture, context_length, load_tokenizer, resolve_device, resolve_dtype

log = logging.getLogger(__name__)


DISTILL_KEYS = ("engine_weights (int8, int4)", "distill.batch_size", "distill.max_new_tokens")


def distill(base: str, adapter: str, train_path: str, out_path: str, cfg: DistillConfig, *, engine: str,
            dtype: str, device: str, seed: int, enable_thinking: bool, gpu: GpuConfig,
            engine_weights: str) -> dict[str, float]:
    """Write one JSONL line per training problem (wrong ones left out with `keep_only_correct`): counts, accuracy."""
    numbered = list(iter_jsonl(train_path, required=("id", "scenario", "messages", "answer")))
    records = [record for _, record in numbered]
    tokenizer = load_tokenizer(adapter)
    prompts = [r["messages"][:-1] for r in records]
    lengths = [len(chat_prompt_ids(tokenizer, p, enable_thinking=enable_thinking)) for p in prompts]
    context = context_length(base)
    check_prompt_lengths(train_path, lengths, limit=context - cfg.max_new_tokens, ids=[r["id"] for r in records],
                         line_numbers=[n for n, _ in numbered],
                         reason=f"the model's context of {context} less distill.max_new_tokens {cfg.max_new_tokens}")
    dev = resolve_device(device)
    budget = cap_memory(dev, gpu.memory_gib, gpu.memory_utilization)
    max_seq_len = max(lengths) + cfg.max_new_tokens
    batch_size, need = fit_rows("distill", [(architecture(base), engine_weights)], budget_gib=budget,
                                max_rows=cfg.batch_size, max_seq_len=cache_length(max_seq_len),
                                prompt_len=max(lengths), dtype_bytes=resolve_dtype(dtype, dev).itemsize,
                                keys=DISTILL_KEYS, utilization=gpu.memory_utilization)
    start = time.perf_counter()
    model = load_served(base, adapter=adapter, engine=engine, weights=engine_weights, dtype=dtype, device=device,
                        max_seq_len=max_seq_len, max_batch_size=batch_size)
    load_seconds = time.perf_counter() - start
    with measure_stage(f"{out_path}.stats.json", "distill", dev) as stats:
        generated = generate_batched(model, tokenizer, prompts, max_new_tokens=cfg.max_new_tokens,
                                     temperature=cfg.temperature, top_p=cfg.top_p, batch_size=batch_size,
                                     seed=seed, enable_thinking=enable_thinking)
        stats.num_tokens = sum(len(ids) for ids in generated)
        log_kernel_tuning("distill generation")
        stats.extra = {"load_seconds": round(load_seconds, 2), "batch_size": batch_size,
                       "memory_budget_gib": budget, "planned_gib": round(need.gib, 3)}
    lines = []
    for record, prompt, ids in zip(records, prompts, generated):
        completion = tokenizer.decode(ids, skip_special_tokens=True).strip()
        answer = extract_answer(completion, record["scenario"])
        lines.append({
            "id": record["id"],
            "prompt": prompt,
            "completion": completion,
            "answer": answer,
            "reference": record["answer"],
            "correct": is_equivalent(answer, record["answer"], record["scenario"]),
            "num_tokens": len(ids),
        })
    num_correct = sum(line["correct"] for line in lines)
    kept = [line for line in lines if line["correct"]] if cfg.keep_only_correct else lines
    if not kept:
        raise ValueError(f"distill.keep_only_correct is set but none of {len(lines)} completions is correct")
    write_jsonl(out_path, kept)
    summary = {"num_problems": len(lines), "num_kept": len(kept), "accuracy": num_correct / len(lines)}
    log.info("distilled %s", summary)
    return summary
