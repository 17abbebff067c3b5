"""Batched plain generation for distillation: the native engine's, or Hugging Face `generate`."""

from __future__ import annotations

import torch

from specdraft.decoding.batching import cut_at_eos, left_pad
from specdraft.plumbing.logs import Progress


def chat_prompt_ids(tokenizer, messages: list[dict], *, enable_thinking: bool) -> list[int]:
    """Token ids of a chat prompt up to the answer; `enable_thinking` goes to the template (Qwen3's reads it)."""
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False,
                                         enable_thinking=enable_thinking)


class PromptTooLong(ValueError):
    """Prompts that do not fit; the message names the file and each prompt's line (or id) and counts them."""


def check_prompt_lengths(path: str, lengths: list[int], *, limit: int, reason: str, ids: list[str],
                         line_numbers: list[int] | None = None) -> None:
    """Raise `PromptTooLong` if a prompt exceeds `limit` tokens (before any cache is sized); reason: why `limit`."""
    if limit < 1:
        raise PromptTooLong(f"{path}: no prompt can fit ({reason}); lower max_new_tokens or max_length")
    too_long = [i for i, n in enumerate(lengths) if n > limit]
    if not too_long:
        return
    where = [f"line {line_numbers[i]} (id {ids[i]})" if line_numbers else f"id {ids[i]}" for i in too_long]
    shown = "; ".join(f"{w}: {lengths[i]:,} tokens" for w, i in zip(where[:5], too_long[:5]))
    more = f"; and {len(too_long) - 5} more" if len(too_long) > 5 else ""
    raise PromptTooLong(f"{path}: {len(too_long)} of {len(lengths)} prompts are longer than {limit:,} tokens "
                        f"({reason}): {shown}{more}. Drop or shorten them in the data.")


def _hf_generate_batch(model, prompts: list[list[int]], *, max_new_tokens: int, temperature: float, top_p: float,
                       eos_token_id: int, pad_token_id: int) -> list[list[int]]:
    """Hugging Face `generate` on left-padded prompts; new tokens per prompt, eos included, padding removed."""
    device = next(model.parameters()).device
    input_ids, pad = left_pad(prompts, pad_token_id)
    attention_mask = (torch.arange(input_ids.shape[1])[None, :] >= pad[:, None]).long()  # [B, width]
    generated = model.generate(
        input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), max_new_tokens=max_new_tokens,
        do_sample=temperature > 0, temperature=temperature if temperature > 0 else None,
        top_p=top_p if temperature > 0 else None, top_k=None,
        eos_token_id=eos_token_id, pad_token_id=pad_token_id,
    )[:, input_ids.shape[1]:].tolist()
    return [cut_at_eos(ids, eos_token_id) for ids in generated]


@torch.inference_mode()
def generate_batched(model, tokenizer, prompts: list[list[dict]], *, max_new_tokens: int, temperature: float,
                     batch_size: int, seed: int, enable_thinking: bool, top_p: float = 1.0) -> list[list[int]]:
    """Token ids generated for each chat prompt by an HF model or `Engine`; batched by length to pad little."""
    from specdraft.engine import Engine

    torch.manual_seed(seed)
    encoded = [chat_prompt_ids(tokenizer, p, enable_thinking=enable_thinking) for p in prompts]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    common = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p,
              "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    outputs: list[list[int]] = [[] for _ in encoded]
    progress = Progress("generate", len(order), unit="prompt")
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        batch = [encoded[i] for i in chunk]
        if isinstance(model, Engine):
            generator = torch.Generator(device=model.device).manual_seed(seed + start)
            generated = model.generate_batch(batch, generator=generator, **common)
        else:
            generated = _hf_generate_batch(model, batch, **common)
        for i, ids in zip(chunk, generated):
            outputs[i] = ids
        progress.update(start + len(chunk), mean_new_tokens=sum(len(outputs[i]) for i in chunk) / len(chunk))
    return outputs
