"""Decoder steps of fixed shape, run eagerly or replayed from captured CUDA graphs.

A step's shape is (batch, T, kv_len): T new tokens attending over the first kv_len cache columns. kv_len
is rounded up to a multiple of `kv_block`, so a generation touches a handful of shapes; each is captured
once, on first use, into a graph that shares one memory pool with the others (gpt-fast's
"reduce-overhead", without compiling). Inputs are copied into the graph's static buffers before a replay;
the returned logits are the graph's static output, valid until the next replay of that shape.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from specdraft.engine.decoder import Decoder, KVCache

MAX_GRAPH_TOKENS = 16  # steps feeding more tokens than this (prefills) run eagerly


class _Graph:
    def __init__(self, decoder: Decoder, cache: KVCache, batch: int, num_tokens: int, kv_len: int,
                 last_only: bool, pool):
        device = cache.device
        self.input_ids = torch.zeros((batch, num_tokens), dtype=torch.long, device=device)
        self.start = torch.zeros(1, dtype=torch.long, device=device)
        self.pad = torch.zeros(batch, dtype=torch.long, device=device)
        self.graph = torch.cuda.CUDAGraph()

        def run() -> Tensor:
            return decoder(self.input_ids, self.start, self.pad, cache, kv_len, last_only, compiled=True)

        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):  # warm-up on a side stream, as capture requires
            run()
        torch.cuda.current_stream().wait_stream(stream)
        with torch.cuda.graph(self.graph, pool=pool):
            self.logits = run()

    def __call__(self, input_ids: Tensor, start: Tensor, pad: Tensor) -> Tensor:
        self.input_ids.copy_(input_ids)
        self.start.copy_(start)
        self.pad.copy_(pad)
        self.graph.replay()
        return self.logits


class StepRunner:
    """Runs `decoder` steps against one `cache`, through CUDA graphs where the shape allows."""

    def __init__(self, decoder: Decoder, cache: KVCache, *, use_cuda_graphs: bool, kv_block: int = 256):
        self.decoder, self.cache, self.kv_block = decoder, cache, kv_block
        self.use_cuda_graphs = use_cuda_graphs and cache.device.type == "cuda"
        self._graphs: dict[tuple, _Graph] = {}
        self._pool = torch.cuda.graph_pool_handle() if self.use_cuda_graphs else None

    def kv_len(self, end: int) -> int:
        """Cache columns a step ending at column `end` (exclusive) attends over: `end` rounded up."""
        if end > self.cache.max_seq_len:
            raise ValueError(f"sequence of {end} positions exceeds the cache's {self.cache.max_seq_len}")
        return min(self.cache.max_seq_len, math.ceil(end / self.kv_block) * self.kv_block)

    @torch.inference_mode()
    def step(self, input_ids: Tensor, start: int, pad: Tensor, last_only: bool = False) -> Tensor:
        """input_ids: [B, T] at columns start..start+T-1; pad: [B]. Returns logits [B, T or 1, V]."""
        batch, num_tokens = input_ids.shape
        kv_len = self.kv_len(start + num_tokens)
        start_t = torch.tensor([start], dtype=torch.long, device=input_ids.device)
        if not self.use_cuda_graphs or num_tokens > MAX_GRAPH_TOKENS:
            return self.decoder(input_ids, start_t, pad, self.cache, kv_len, last_only)
        key = (batch, num_tokens, kv_len, last_only)
        if key not in self._graphs:
            self._graphs[key] = _Graph(self.decoder, self.cache, batch, num_tokens, kv_len, last_only, self._pool)
        return self._graphs[key](input_ids, start_t, pad)

    @property
    def num_graphs(self) -> int:
        return len(self._graphs)
