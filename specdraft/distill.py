"""The distill stage: the tuned target answers the training problems; its completions train the draft."""

from __future__ import annotations

import logging

from specdraft.answers import extract_answer, is_equivalent
from specdraft.config import DistillConfig
from specdraft.generation import chat_prompt_ids, check_prompt_lengths, generate_batched
from specdraft.gpu_stats import measure_stage
from specdraft.jsonl import iter_jsonl, write_jsonl
from specdraft.engine_choice import load_served
from specdraft.models import context_length, load_tokenizer, resolve_device

log = logging.getLogger(__name__)


def distill(base: str, adapter: str, train_path: str, out_path: str, cfg: DistillConfig, *, engine: str,
            dtype: str, device: str, seed: int, enable_thinking: bool, engine_weights: str = "bf16") -> dict[str, float]:
    """Write one JSONL line per training problem: prompt, completion, extracted answer, correct flag,
    token count. With `keep_only_correct`, wrong completions are left out. Returns counts and accuracy."""
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
    model = load_served(base, adapter=adapter, engine=engine, weights=engine_weights, dtype=dtype, device=device,
                        max_seq_len=max(lengths) + cfg.max_new_tokens, max_batch_size=cfg.batch_size)
    with measure_stage(f"{out_path}.stats.json", "distill", dev) as stats:
        generated = generate_batched(model, tokenizer, prompts, max_new_tokens=cfg.max_new_tokens,
                                     temperature=cfg.temperature, top_p=cfg.top_p, batch_size=cfg.batch_size,
                                     seed=seed, enable_thinking=enable_thinking)
        stats.num_tokens = sum(len(ids) for ids in generated)
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
