"""A decoding session: one sequence's KV cache behind a model, fed incrementally and rolled back.

`speculative_generate` and `autoregressive_generate` are written once against this interface; a Hugging Face
model gets an `HFSession` (a `DynamicCache`), a `specdraft.engine.Engine` its own static-cache session.
"""

from __future__ import annotations

import inspect
from typing import Protocol

import torch
from torch import Tensor


class Session(Protocol):
    """Token ids go in as a host list or a tensor on the session's device; results come back as device
    tensors. A session never reads a value back from the device, so a caller that feeds it device tensors
    decides where the host waits (`speculative_generate`: once per step)."""

    length: int  # positions whose keys and values are cached
    vocab_size: int
    device: torch.device

    def forward(self, token_ids: list[int] | Tensor, num_logits: int) -> Tensor:
        """Feed `token_ids` ([T]) after the cached positions; return the last `num_logits` logits [n, V]."""

    def propose_greedy(self, pending: list[int] | Tensor, k: int) -> Tensor:
        """Feed `pending` ([P], P >= 1), then k - 1 times the argmax of the last logits; return the k argmax
        tokens [k] on the device (k >= 1)."""

    def rollback(self, length: int) -> None:
        """Forget every cached position from `length` on (the one place a cache is rolled back)."""


def device_ids(token_ids: list[int] | Tensor, device: torch.device) -> Tensor:
    """Token ids [T] as a long tensor on `device`. A host list bound for a GPU is staged in pinned memory and
    copied without blocking: a plain copy from pageable memory would first wait for the device's queued work
    (the caching host allocator keeps the staging block until the copy is done)."""
    if isinstance(token_ids, Tensor):
        return token_ids.to(device)
    ids = torch.tensor(token_ids, dtype=torch.long)
    return ids.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else ids.to(device)


class HFSession:
    """A Hugging Face causal LM with a `DynamicCache`."""

    def __init__(self, model):
        from transformers import DynamicCache

        self.model = model
        self.cache = DynamicCache(config=model.config)
        self.vocab_size = model.config.vocab_size
        self.device = next(model.parameters()).device
        # transformers 5.x renamed `past_key_values` to `cache` (the old name goes in 5.40).
        params = inspect.signature(type(model).forward).parameters
        self._cache_keyword = "cache" if "cache" in params else "past_key_values"

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
    """A fresh session for `model`: the engine's own for an `Engine`, else a Hugging Face one.

    max_length: prompt plus generated tokens the session must hold.
    """
    open_own = getattr(model, "open_session", None)
    return open_own(max_length) if open_own is not None else HFSession(model)
