"""Decoder steps of fixed shape, run eagerly or replayed from captured CUDA graphs.

A step's shape is (batch, T, kv_len): T new tokens attending over the first kv_len cache columns. kv_len
is rounded up to a multiple of `kv_block`, so a generation touches a handful of shapes; each is captured
once, on first use, into a graph that shares one memory pool with the others (gpt-fast's
"reduce-overhead", without compiling). A greedy draft proposal of k tokens is one graph too: each step's
argmax feeds the next on the device, so the host neither waits nor launches between draft tokens.
Inputs are copied into a graph's static buffers before a replay; what it returns is the graph's static
output, valid until that graph's next replay.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from specdraft.engine.decoder import Decoder, KVCache

MAX_GRAPH_TOKENS = 16  # steps feeding more tokens than this (prefills) run eagerly


class _Graph:
    """`fn(input_ids, start, pad)` captured over static copies of its inputs."""

    def __init__(self, fn: Callable[[Tensor, Tensor, Tensor], Tensor], input_ids: Tensor, start: Tensor,
                 pad: Tensor, pool):
        self.inputs = (input_ids.clone(), start.clone(), pad.clone())
        self.graph = torch.cuda.CUDAGraph()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):  # warm-up on a side stream, as capture requires
            fn(*self.inputs)
        torch.cuda.current_stream().wait_stream(stream)
        with torch.cuda.graph(self.graph, pool=pool):
            self.output = fn(*self.inputs)

    def __call__(self, input_ids: Tensor, start: Tensor, pad: Tensor) -> Tensor:
        for buffer, value in zip(self.inputs, (input_ids, start, pad)):
            buffer.copy_(value)
        self.graph.replay()
        return self.output


class StepRunner:
    """Runs `decoder` steps against one `cache`, through CUDA graphs where the shape allows."""

    def __init__(self, decoder: Decoder, cache: KVCache, *, use_cuda_graphs: bool, kv_block: int = 256):
        self.decoder, self.cache, self.kv_block = decoder, cache, kv_block
        self.use_cuda_graphs = use_cuda_graphs and cache.device.type == "cuda"
        self._graphs: dict[tuple, _Graph] = {}
        # Every graph-sized shape met, captured or (off a GPU) run eagerly: what a graph capture keys on,
        # counted on a CPU too, so that a test can check that warm_up leaves none to meet for the first time.
        self.shapes_met: set[tuple] = set()
        self._pool = torch.cuda.graph_pool_handle() if self.use_cuda_graphs else None

    def kv_len(self, end: int) -> int:
        """Cache columns a step ending at column `end` (exclusive) attends over: `end` rounded up."""
        if end > self.cache.max_seq_len:
            raise ValueError(f"sequence of {end} positions exceeds the cache's {self.cache.max_seq_len}")
        return min(self.cache.max_seq_len, math.ceil(end / self.kv_block) * self.kv_block)

    def _run(self, key: tuple, fn: Callable, input_ids: Tensor, start: int, pad: Tensor, graph: bool) -> Tensor:
        start_t = torch.tensor([start], dtype=torch.long, device=input_ids.device)
        if graph:
            self.shapes_met.add(key)
        if not (graph and self.use_cuda_graphs):
            return fn(input_ids, start_t, pad)
        if key not in self._graphs:
            self._graphs[key] = _Graph(fn, input_ids, start_t, pad, self._pool)
        return self._graphs[key](input_ids, start_t, pad)

    @torch.inference_mode()
    def step(self, input_ids: Tensor, start: int, pad: Tensor, last_only: bool = False) -> Tensor:
        """input_ids: [B, T] at columns start..start+T-1; pad: [B]. Returns logits [B, T or 1, V]."""
        batch, num_tokens = input_ids.shape
        kv_len = self.kv_len(start + num_tokens)
        graph = num_tokens <= MAX_GRAPH_TOKENS

        def fn(ids: Tensor, start_t: Tensor, pad_t: Tensor) -> Tensor:
            return self.decoder(ids, start_t, pad_t, self.cache, kv_len, last_only, compiled=graph)

        return self._run(("step", batch, num_tokens, kv_len, last_only), fn, input_ids, start, pad, graph)

    @torch.inference_mode()
    def propose_greedy(self, token: Tensor, start: int, pad: Tensor, k: int) -> Tensor:
        """Feed token [1, 1] at column `start` and each greedy successor after it, k steps in all.
        Returns the k greedy tokens [1, k]; columns start..start+k-1 are cached."""
        kv_len = self.kv_len(start + k)

        def fn(ids: Tensor, start_t: Tensor, pad_t: Tensor) -> Tensor:
            proposed = []
            for j in range(k):
                logits = self.decoder(ids, start_t + j, pad_t, self.cache, kv_len, True, compiled=True)  # [1,1,V]
                ids = logits[:, -1].argmax(dim=-1, keepdim=True)  # [1, 1]
                proposed.append(ids)
            return torch.cat(proposed, dim=1)  # [1, k]

        return self._run(("propose", k, kv_len), fn, token, start, pad, graph=True)

    def kv_buckets(self) -> list[int]:
        """Every kv_len a step can attend over."""
        return sorted({self.kv_len(end) for end in range(self.kv_block, self.cache.max_seq_len + 1, self.kv_block)}
                      | {self.kv_len(self.cache.max_seq_len)})

    def warm_up(self, steps: list[tuple[int, bool]], proposal_lengths: list[int]) -> None:
        """Run (and on a GPU capture) now every graph of batch 1 that `steps` ((num_tokens, last_only) pairs)
        and greedy proposals of `proposal_lengths` tokens can meet, at every KV bucket. They write cache
        columns no session has attended yet, or that it overwrites before attending them."""
        pad = torch.zeros(1, dtype=torch.long, device=self.cache.device)
        for kv_len in self.kv_buckets():
            for num_tokens, last_only in steps:
                if num_tokens <= kv_len:
                    ids = torch.zeros(1, num_tokens, dtype=torch.long, device=self.cache.device)
                    self.step(ids, kv_len - num_tokens, pad, last_only)
            for k in proposal_lengths:
                if k <= kv_len:
                    self.propose_greedy(torch.zeros(1, 1, dtype=torch.long, device=self.cache.device),
                                        kv_len - k, pad, k)

    @property
    def num_graphs(self) -> int:
        return len(self._graphs)
