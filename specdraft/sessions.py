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
    length: int  # positions whose keys and values are cached
    vocab_size: int

    def forward(self, token_ids: list[int], num_logits: int) -> Tensor:
        """Feed `token_ids` after the cached positions; return the last `num_logits` logits [n, V]."""

    def propose_greedy(self, pending: list[int], k: int) -> list[int]:
        """Feed `pending`, then k times the argmax of the last logits; return those k tokens."""

    def rollback(self, length: int) -> None:
        """Forget every cached position from `length` on (the one place a cache is rolled back)."""


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

    def forward(self, token_ids: list[int], num_logits: int) -> Tensor:
        ids = torch.tensor([token_ids], device=self.device)  # [1, n]
        out = self.model(input_ids=ids, use_cache=True, logits_to_keep=num_logits,
                         **{self._cache_keyword: self.cache})
        return out.logits[0, -num_logits:]

    def propose_greedy(self, pending: list[int], k: int) -> list[int]:
        proposed = []
        for _ in range(k):
            pending = [int(self.forward(pending, 1)[0].argmax())]
            proposed.append(pending[0])
        return proposed

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
