"""Prompts of different lengths in one batch, and outputs cut at eos: shared by HF's and the engine's generation."""

from __future__ import annotations

import torch


def left_pad(prompts: list[list[int]], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts right-aligned in one batch: input_ids [B, width], and each row's padding length [B]."""
    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad_token_id, dtype=torch.long)
    for row, prompt in enumerate(prompts):
        input_ids[row, width - len(prompt):] = torch.tensor(prompt)
    return input_ids, torch.tensor([width - len(p) for p in prompts], dtype=torch.long)


def cut_at_eos(ids: list[int], eos_token_id: int | None) -> list[int]:
    return ids[: ids.index(eos_token_id) + 1] if eos_token_id in ids else ids


def eos_set(eos_token_id: int | list[int] | None) -> set[int]:
    if eos_token_id is None:
        return set()
    return {eos_token_id} if isinstance(eos_token_id, int) else set(eos_token_id)


def truncate_at_eos(new_ids: list[int], eos: set[int]) -> tuple[list[int], bool]:
    """`new_ids` up to and including the first token in `eos`, and whether one was found."""
    for i, t in enumerate(new_ids):
        if t in eos:
            return new_ids[: i + 1], True
    return new_ids, False
