"""A decoding session: one sequence's KV cache behind an HF model or an `Engine`, fed incrementally, rolled back."""

from __future__ import annotations

import inspect
from typing import Protocol

import torch
from torch import Tensor


class Session(Protocol):
    """One sequence's cache; it never reads back from the device, so its caller decides where the host waits."""

    length: int  # positions whose keys and values are cached
    vocab_size: int
    device: torch.device

    def forward(self, token_ids: list[int] | Tensor, num_logits: int) -> Tensor:
        """Feed `token_ids` ([T]) after the cached positions; return the last `num_logits` logits [n, V]."""

    def propose_greedy(self, pending: list[int] | Tensor, k: int) -> Tensor:
        """Feed `pending` ([P], P >= 1), then k - 1 greedy tokens; return the k argmax tokens [k] on the device."""

    def rollback(self, length: int) -> None:
        """Forget every cached position from `length` on (the one place a cache is rolled back)."""


def device_ids(token_ids: list[int] | Tensor, device: torch.device) -> Tensor:
    """Token ids [T] on `device`; a host list goes through pinned memory, as a pageable copy waits for queued work."""
    if isinstance(token_ids, Tensor):
        return token_ids.to(device)
    ids = torch.tensor(token_ids, dtype=torch.long)
    return ids.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else ids.to(device)


class HFSession:
    def __init__(self, model):
        from transformers import DynamicCache

        self.model = model
        self.cache = DynamicCache(config=model.config)
        self.vocab_size = model.config.vocab_size
        self.device = next(model.parameters()).device
        params = inspect.signature(type(model).forward).parameters
        self._cache_keyword = "cache" if "cache" in params else "past_key_values"  # transformers 5.x: `cache`

    @property
    def length(self) -> int:
        return self.cache.get_seq_length()

    def forward(self, token_ids: list[int] | Tensor, num_logits: int) -> Tensor:
        ids = device_ids(token_ids, self.device)[None]  # [1, T]
        out = self.model(input_ids=ids, use_cache=True, logits_to_keep=num_logits,
                         **{self._cache_keyword: self.cache})
        return out.logits[0, -num_logits:]

    def propose_greedy(self, pending: list[int] | Tensor, k: int) -> Tensor:
        ids, proposed = device_ids(pending, self.device), []
        for _ in range(k):
            ids = self.forward(ids, 1)[0].argmax(dim=-1, keepdim=True)  # [1]
            proposed.append(ids)
        return torch.cat(proposed)  # [k]

    def rollback(self, length: int) -> None:
        excess = self.length - length
        if excess > 0:
            self.cache.crop(-excess)  # a negative count removes tokens in every transformers version


def open_session(model, max_length: int) -> Session:
    """A fresh session of up to `max_length` positions: the engine's own for an `Engine`, else an `HFSession`."""
    open_own = getattr(model, "open_session", None)
    return open_own(max_length) if open_own is not None else HFSession(model)
