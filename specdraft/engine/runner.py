"""Decoder steps of fixed shape (batch, T, kv_len rounded up to `kv_block`), run eagerly or replayed from
CUDA graphs captured on first use into one pool. A k-token proposal is one graph, so the host neither
waits nor launches between draft tokens; a prefill is one graph per PREFILL_BLOCK of prompt lengths.
Outputs are static: valid until that graph's next replay."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from specdraft.engine import tuner as tuning
from specdraft.engine.decoder import Decoder, KVCache
from specdraft.engine.fused_step import fused_step_for
from specdraft.engine.timing import median_ms
from specdraft.decoding.verification import probabilities, sample_inverse_cdf

MAX_GRAPH_TOKENS = 16  # steps feeding more tokens than this are prefills
# A prefill graph serves prompts of up to PREFILL_BLOCK - 1 tokens fewer than its own: a divisor of kv_block and
# of every power of two above 16, so padding changes neither kv_len nor the row count kernel choices are keyed by.
PREFILL_BLOCK = 32
MAX_GRAPH_PREFILL = 1024  # longer prefills run eagerly
PREFILL_LOGITS = MAX_GRAPH_TOKENS  # a prefill returns the logits of its last this many positions
# Only proposals by default: whatever a proposal holds, verification keeps speculative output exact.
DEPENDENT_LAUNCH_STEPS = frozenset({"propose_rows"})
STEP_KINDS = frozenset({"step", "rows", "propose_rows", "prefill"})  # the methods below


class _Graph:
    """`fn(*inputs)` captured over static copies of its inputs. With `try_dependent` (where supported) it is
    also captured with dependent launches and the faster replay kept (`pdl_ms`: plain, dependent)."""

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
        graph.replay()
        return median_ms(graph.replay, self.TIMED_REPLAYS)

    def __call__(self, *inputs: Tensor):
        for buffer, value in zip(self.inputs, inputs):
            buffer.copy_(value)
        self.graph.replay()
        return self.output


class StepRunner:
    """Runs `decoder` steps against one `cache`, through CUDA graphs where the shape allows."""

    def __init__(self, decoder: Decoder, cache: KVCache, *, use_cuda_graphs: bool, kv_block: int = 256,
                 dependent_launch_steps: frozenset[str] = DEPENDENT_LAUNCH_STEPS):
        if not dependent_launch_steps <= STEP_KINDS:
            raise ValueError(f"dependent_launch_steps must be among {sorted(STEP_KINDS)}, got "
                             f"{sorted(dependent_launch_steps)}")
        self.decoder, self.cache, self.kv_block = decoder, cache, kv_block
        self.dependent_launch_steps = frozenset(dependent_launch_steps)
        self.use_cuda_graphs = use_cuda_graphs and cache.device.type == "cuda"
        self._graphs: dict[tuple, _Graph] = {}
        self.shapes_met: set[tuple] = set()
        self._pool = torch.cuda.graph_pool_handle() if self.use_cuda_graphs else None
        self._columns = torch.arange(cache.max_seq_len, device=cache.device)  # a prefill's logit rows, as views

    @contextlib.contextmanager
    def eager(self):
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
        """Row b's input_ids [B, T] at columns start[b].. (start [B]); end: max start[b] + T. Logits [B, T, V]."""
        batch, num_tokens = input_ids.shape
        kv_len = self.kv_len(end)
        graph = num_tokens <= MAX_GRAPH_TOKENS

        def fn(ids: Tensor, start_t: Tensor, pad_t: Tensor) -> Tensor:
            return self.decoder(ids, start_t, pad_t, self.cache, kv_len, compiled=graph)

        return self._run(("rows", batch, num_tokens, kv_len), fn, input_ids, start, pad, graph)

    def prefill_width(self, first: int, num_tokens: int) -> int | None:
        """Tokens of the graph a prefill of num_tokens at column `first` replays, or None: it runs eagerly."""
        width = math.ceil(num_tokens / PREFILL_BLOCK) * PREFILL_BLOCK
        fits = num_tokens > MAX_GRAPH_TOKENS and width <= MAX_GRAPH_PREFILL and first + width <= self.cache.max_seq_len
        return width if fits else None

    @torch.inference_mode()
    def prefill(self, input_ids: Tensor, start: Tensor, pad: Tensor, end: int) -> Tensor:
        """input_ids [B, T] (T > MAX_GRAPH_TOKENS) at columns start.. (start [1] or [B]); end: max start + T.
        Returns the logits of the last min(T, PREFILL_LOGITS) positions [B, n, V]. In a graph the tokens are
        padded to `prefill_width`; the padding's columns follow the prompt's, so a later step overwrites each
        before any query attends it, and its rows come after the prompt's, which attend only earlier columns."""
        batch, num_tokens = input_ids.shape
        width = self.prefill_width(end - num_tokens, num_tokens)
        kv_len = self.kv_len(end if width is None else end - num_tokens + width)  # equal unless kv_block % 32
        rows = self._columns[max(0, num_tokens - PREFILL_LOGITS) : num_tokens]

        def fn(ids: Tensor, start_t: Tensor, pad_t: Tensor, rows_t: Tensor) -> Tensor:
            return self.decoder(ids, start_t, pad_t, self.cache, kv_len, logit_rows=rows_t)

        if width is not None:  # padded eagerly too, so the CPU's tests run what a graph replays
            input_ids = F.pad(input_ids, (0, width - num_tokens))
        key = ("prefill", batch, width, kv_len)
        return self._run(key, fn, input_ids, start, pad, width is not None, rows)

    @torch.inference_mode()
    def propose_rows(self, tokens: Tensor, start: Tensor, pad: Tensor, end: int, uniforms: Tensor,
                     temperature: float, top_p: float) -> tuple[Tensor, Tensor | None]:
        """Feed tokens [B, 2] at start[b].., then k = uniforms.shape[1] steps: argmax at temperature 0, else
        the inverse CDF at uniforms [B, k]. Returns the proposal [B, k] and (sampling) distributions [B, k, V]."""
        batch, k = uniforms.shape
        kv_len = self.kv_len(end)
        fused = fused_step_for(self.decoder) if batch == 1 else None  # one launch a token (`fused_step`)

        def fn(ids: Tensor, start_t: Tensor, pad_t: Tensor, u: Tensor) -> tuple[Tensor, Tensor | None]:
            proposed, dists = [], []
            for j in range(k):
                step = fused(ids, start_t, pad_t, self.cache, kv_len, 0 if j == 0 else j + 1) if fused else None
                if step is None:
                    column = start_t if j == 0 else start_t + j + 1
                    logits = self.decoder(ids, column, pad_t, self.cache, kv_len, True, compiled=True)[:, -1]
                    greedy = None
                else:
                    logits, greedy = step  # [1, V], [1, 1]
                if temperature == 0:
                    ids = greedy if greedy is not None else logits.argmax(dim=-1, keepdim=True)  # [B, 1]
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
        """Each graph offered dependent launches: its replay times and choice, or why the capture failed."""
        return {str(key): {"plain_ms": g.pdl_ms[0], "dependent_ms": g.pdl_ms[1], "dependent": g.dependent}
                if g.pdl_ms is not None else {"dependent": False, "error": g.pdl_error}
                for key, g in self._graphs.items() if g.pdl_ms is not None or g.pdl_error is not None}
