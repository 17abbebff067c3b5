"""Decoder steps of fixed shape, run eagerly or replayed from captured CUDA graphs.

A step's shape is (batch, T, kv_len): T new tokens attending over the first kv_len cache columns. kv_len
is rounded up to a multiple of `kv_block`, so a generation touches a handful of shapes; each is captured
once, on first use, into a graph that shares one memory pool with the others (gpt-fast's
"reduce-overhead", without compiling). A draft proposal of k tokens is one graph too (`propose_rows`):
each step's argmax (or sample, from uniforms drawn before the replay) feeds the next on the device, so the
host neither waits nor launches between draft tokens. Ragged batches (`step_rows`, `propose_rows`) give every row its own
first column: one graph per (batch, tokens, kv_len) serves any mix of row lengths.
Inputs are copied into a graph's static buffers before a replay; what it returns is the graph's static
output, valid until that graph's next replay.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import torch
from torch import Tensor

from specdraft.engine import tuner as tuning
from specdraft.engine.decoder import Decoder, KVCache
from specdraft.engine.timing import median_ms
from specdraft.decoding.verification import probabilities, sample_inverse_cdf

MAX_GRAPH_TOKENS = 16  # steps feeding more tokens than this (prefills) run eagerly
# The steps whose graphs are offered dependent launches by default (`StepRunner.dependent_launch_steps`).
# Only proposals: whatever a proposal holds, verification against the target keeps speculative output exact
# (the target's greedy tokens, or with sampling its distribution, as each proposed token is drawn from the
# distribution returned with it). benchmarks/engine_speed.py --offer-pdl all measures every graph both ways.
DEPENDENT_LAUNCH_STEPS = frozenset({"propose_rows"})
STEP_KINDS = frozenset({"step", "rows", "propose_rows"})  # `step`, `step_rows`, `propose_rows`


class _Graph:
    """`fn(*inputs)` captured over static copies of its tensor inputs. With `try_dependent`, where the GPU
    supports programmatic dependent launch (`LaunchOptions.supported`), the step is captured twice, with the
    kernels launched plainly and with dependent launches, each replayed and timed, and the faster kept
    (`pdl_ms`: both timings, plain then dependent; `dependent`: which was kept): which wins depends on the
    model and the step (docs/performance.md). A dependent capture that fails leaves the plain graph
    (`pdl_error`)."""

    TIMED_REPLAYS = 10

    def __init__(self, fn: Callable[..., object], inputs: tuple[Tensor, ...], pool, try_dependent: bool = False):
        self.inputs = tuple(t.clone() for t in inputs)
        self.pdl_ms: tuple[float, float] | None = None
        self.dependent, self.pdl_error = False, None
        self.graph, self.output = self._capture(fn, pool, pdl=False)
        if try_dependent and tuning.current().launch.supported():
            try:
                graph, output = self._capture(fn, pool, pdl=True)
            except Exception as e:  # this driver or Triton refuses it: the plain graph serves  # noqa: BLE001
                self.pdl_error = f"{type(e).__name__}: {e}"[:300]
                return
            self.pdl_ms = (self._replay_ms(self.graph), self._replay_ms(graph))
            if self.pdl_ms[1] < self.pdl_ms[0]:
                self.graph, self.output, self.dependent = graph, output, True

    def _capture(self, fn: Callable[..., object], pool, pdl: bool) -> tuple[torch.cuda.CUDAGraph, object]:
        graph = torch.cuda.CUDAGraph()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with tuning.current().launch.dependent(pdl):
            with torch.cuda.stream(stream):  # warm-up on a side stream, as capture requires
                fn(*self.inputs)
            torch.cuda.current_stream().wait_stream(stream)
            with torch.cuda.graph(graph, pool=pool):
                output = fn(*self.inputs)
        return graph, output

    def _replay_ms(self, graph: torch.cuda.CUDAGraph) -> float:
        """Median milliseconds of a replay, back to back as decoding replays (the same static inputs each
        time: a replay rewrites what the last one wrote)."""
        graph.replay()
        return median_ms(graph.replay, self.TIMED_REPLAYS)

    def __call__(self, *inputs: Tensor):
        for buffer, value in zip(self.inputs, inputs):
            buffer.copy_(value)
        self.graph.replay()
        return self.output


class StepRunner:
    """Runs `decoder` steps against one `cache`, through CUDA graphs where the shape allows.

    use_cuda_graphs: replay graphs (on a CUDA device), or run every step eagerly (`eager()` for a while).
    dependent_launch_steps: the kinds of step (of STEP_KINDS) whose graphs are offered dependent
    launches."""

    def __init__(self, decoder: Decoder, cache: KVCache, *, use_cuda_graphs: bool, kv_block: int = 256,
                 dependent_launch_steps: frozenset[str] = DEPENDENT_LAUNCH_STEPS):
        if not dependent_launch_steps <= STEP_KINDS:
            raise ValueError(f"dependent_launch_steps must be among {sorted(STEP_KINDS)}, got "
                             f"{sorted(dependent_launch_steps)}")
        self.decoder, self.cache, self.kv_block = decoder, cache, kv_block
        self.dependent_launch_steps = frozenset(dependent_launch_steps)
        self.use_cuda_graphs = use_cuda_graphs and cache.device.type == "cuda"
        self._graphs: dict[tuple, _Graph] = {}
        # Every graph-sized shape met, captured or (off a GPU) run eagerly: what a graph capture keys on,
        # counted on a CPU too, so that a test can check that warm_up leaves none to meet for the first time.
        self.shapes_met: set[tuple] = set()
        self._pool = torch.cuda.graph_pool_handle() if self.use_cuda_graphs else None

    @contextlib.contextmanager
    def eager(self):
        """Run every step eagerly inside, one kernel at a time from the host; the graphs serve again after."""
        before, self.use_cuda_graphs = self.use_cuda_graphs, False
        try:
            yield self
        finally:
            self.use_cuda_graphs = before

    def kv_len(self, end: int) -> int:
        """Cache columns a step ending at column `end` (exclusive) attends over: `end` rounded up."""
        if end > self.cache.max_seq_len:
            raise ValueError(f"sequence of {end} positions exceeds the cache's {self.cache.max_seq_len}")
        return min(self.cache.max_seq_len, math.ceil(end / self.kv_block) * self.kv_block)

    def _run(self, key: tuple, fn: Callable, input_ids: Tensor, start: int | Tensor, pad: Tensor, graph: bool,
             *extra: Tensor):
        start_t = start if isinstance(start, Tensor) else torch.tensor([start], dtype=torch.long,
                                                                        device=input_ids.device)
        inputs = (input_ids, start_t, pad, *extra)
        if graph:
            self.shapes_met.add(key)
        if not (graph and self.use_cuda_graphs):
            return fn(*inputs)
        if key not in self._graphs:
            self._graphs[key] = _Graph(fn, inputs, self._pool, key[0] in self.dependent_launch_steps)
        return self._graphs[key](*inputs)

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
    def step_rows(self, input_ids: Tensor, start: Tensor, pad: Tensor, end: int) -> Tensor:
        """Ragged rows: row b's input_ids [B, T] at its columns start[b]..start[b]+T-1 (start: [B]);
        end: the largest start[b] + T (exclusive). Returns logits [B, T, V]."""
        batch, num_tokens = input_ids.shape
        kv_len = self.kv_len(end)
        graph = num_tokens <= MAX_GRAPH_TOKENS

        def fn(ids: Tensor, start_t: Tensor, pad_t: Tensor) -> Tensor:
            return self.decoder(ids, start_t, pad_t, self.cache, kv_len, compiled=graph)

        return self._run(("rows", batch, num_tokens, kv_len), fn, input_ids, start, pad, graph)

    @torch.inference_mode()
    def propose_rows(self, tokens: Tensor, start: Tensor, pad: Tensor, end: int, uniforms: Tensor,
                     temperature: float, top_p: float) -> tuple[Tensor, Tensor | None]:
        """Ragged rows: feed tokens [B, 2] at columns start[b], start[b]+1, then each row's successor, k
        steps in all (k = uniforms.shape[1]); end: the largest start[b] + k + 1. Greedy (temperature 0):
        the argmax; else a sample drawn by inverting the CDF at uniforms [B, k] (uniform on [0, 1)).
        Returns the proposal [B, k] and (sampling only) its distributions [B, k, V]."""
        batch, k = uniforms.shape
        kv_len = self.kv_len(end)

        def fn(ids: Tensor, start_t: Tensor, pad_t: Tensor, u: Tensor) -> tuple[Tensor, Tensor | None]:
            proposed, dists = [], []
            for j in range(k):
                column = start_t if j == 0 else start_t + j + 1
                logits = self.decoder(ids, column, pad_t, self.cache, kv_len, True, compiled=True)[:, -1]  # [B, V]
                if temperature == 0:
                    ids = logits.argmax(dim=-1, keepdim=True)  # [B, 1]
                else:
                    probs = probabilities(logits, temperature, top_p)  # [B, V]
                    ids = sample_inverse_cdf(probs, u[:, j])[:, None]
                    dists.append(probs)
                proposed.append(ids)
            return torch.cat(proposed, dim=1), torch.stack(dists, dim=1) if dists else None

        key = ("propose_rows", batch, k, kv_len, temperature, top_p)
        return self._run(key, fn, tokens, start, pad, True, uniforms)

    def kv_buckets(self) -> list[int]:
        """Every kv_len a step can attend over."""
        return sorted({self.kv_len(end) for end in range(self.kv_block, self.cache.max_seq_len + 1, self.kv_block)}
                      | {self.kv_len(self.cache.max_seq_len)})

    @property
    def num_graphs(self) -> int:
        return len(self._graphs)

    def launch_choices(self) -> dict[str, dict]:
        """Each graph offered dependent launches: its replay times plain and dependent (ms), which it kept,
        or why the dependent capture failed."""
        return {str(key): {"plain_ms": g.pdl_ms[0], "dependent_ms": g.pdl_ms[1], "dependent": g.dependent}
                if g.pdl_ms is not None else {"dependent": False, "error": g.pdl_error}
                for key, g in self._graphs.items() if g.pdl_ms is not None or g.pdl_error is not None}
