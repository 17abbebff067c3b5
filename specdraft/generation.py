"""Batched plain generation with Hugging Face `generate`, for distillation."""

from __future__ import annotations

import torch


def chat_prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    """Token ids of a chat prompt, ending where the assistant's answer starts."""
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)


@torch.inference_mode()
def generate_batched(model, tokenizer, prompts: list[list[dict]], *, max_new_tokens: int, temperature: float,
                     batch_size: int, seed: int) -> list[list[int]]:
    """Generated token ids for every chat prompt (eos included if produced, padding removed).

    Prompts are batched in order of length so that little padding is computed; results keep input order.
    """
    torch.manual_seed(seed)
    encoded = [chat_prompt_ids(tokenizer, p) for p in prompts]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    device = next(model.parameters()).device
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    outputs: list[list[int]] = [[] for _ in encoded]
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        width = max(len(encoded[i]) for i in chunk)
        input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)  # left padding
        attention_mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, i in enumerate(chunk):
            input_ids[row, width - len(encoded[i]) :] = torch.tensor(encoded[i])
            attention_mask[row, width - len(encoded[i]) :] = 1
        generated = model.generate(
            input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
            max_new_tokens=max_new_tokens, do_sample=temperature > 0,
            temperature=temperature if temperature > 0 else None, top_p=None, top_k=None,
            eos_token_id=eos, pad_token_id=pad,
        )[:, width:].tolist()
        for row, i in enumerate(chunk):
            ids = generated[row]
            outputs[i] = ids[: ids.index(eos) + 1] if eos in ids else ids
    return outputs
