"""The native engine: a `Decoder` with static KV caches and CUDA-graph steps, behind sessions, batches and rows."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from specdraft.engine.decoder import Decoder, KVCache
from specdraft.engine.runner import DEPENDENT_LAUNCH_STEPS, MAX_GRAPH_TOKENS, PREFILL_LOGITS, StepRunner
from specdraft.decoding.batching import cut_at_eos, left_pad
from specdraft.decoding.sessions import device_ids
from specdraft.decoding.verification import probabilities
from specdraft.plumbing.names import MODEL_DTYPE


class EngineSession:
    """One sequence in the batch-1 cache; a newer session on the same engine supersedes it. Nothing here waits
    for the device: start columns are views of a device tensor, so steps are batch-1 ragged rows."""

    def __init__(self, engine: Engine, epoch: int):
        self.engine, self.epoch, self.length = engine, epoch, 0
        self.vocab_size, self.device = engine.vocab_size, engine.device
        self._ids = torch.zeros(engine.max_seq_len, dtype=torch.long, device=self.device)  # cached tokens
        self._no_uniforms: dict[int, Tensor] = {}  # k -> zeros [1, k]: a greedy proposal draws nothing

    def _runner(self) -> StepRunner:
        if self.epoch != self.engine._epoch:
            raise RuntimeError("this session was superseded by a newer one on the same engine; "
                               "use one Engine per concurrent sequence")
        return self.engine.session_runner()

    def _start(self) -> Tensor:
        return self.engine._positions[self.length : self.length + 1]  # [1], holds self.length

    @torch.inference_mode()
    def forward(self, token_ids: list[int] | Tensor, num_logits: int) -> Tensor:
        """Logits [num_logits, V]: on a GPU a graph's static output, valid until that graph's next replay."""
        runner = self._runner()
        ids = device_ids(token_ids, self.device)  # [T]
        end = self.length + ids.shape[0]
        if ids.shape[0] <= MAX_GRAPH_TOKENS:
            logits = runner.step_rows(ids[None], self._start(), self.engine._zero_pad, end)[0]  # [T, V]
        elif num_logits <= PREFILL_LOGITS:
            logits = runner.prefill(ids[None], self._start(), self.engine._zero_pad, end)[0]  # [16, V]
        else:  # more logits than a prefill keeps: eager, every position's
            logits = runner.decoder(ids[None], self._start(), self.engine._zero_pad, runner.cache,
                                    runner.kv_len(end))[0]
        self._ids[self.length : end] = ids
        self.length = end
        return logits[-num_logits:]

    @torch.inference_mode()
    def propose_greedy(self, pending: list[int] | Tensor, k: int) -> Tensor:
        """Feed `pending` and return the k greedy tokens after it [k], one graph replay (valid until the next
        proposal of k). The graph takes two tokens, so a lone token is fed with the cached one before it."""
        ids = device_ids(pending, self.device)  # [P]
        if ids.shape[0] > 2:
            self.forward(ids[:-2], 1)
            ids = ids[-2:]
        if ids.shape[0] == 1:
            if self.length == 0:  # a one-token sequence: nothing before it; a plain step proposes first
                first = self.forward(ids, 1).argmax(dim=-1)  # [1]
                return first if k == 1 else torch.cat((first, self.propose_greedy(first, k - 1)))
            self.length -= 1
            ids = torch.cat((self._ids[self.length : self.length + 1], ids))  # [2]
        if k not in self._no_uniforms:
            self._no_uniforms[k] = torch.zeros(1, k, device=self.device)
        end = self.length + k + 1  # the two tokens and k - 1 proposals are cached
        proposal = self._runner().propose_rows(ids[None], self._start(), self.engine._zero_pad, end,
                                               self._no_uniforms[k], 0.0, 1.0)[0][0]  # [k]
        self._ids[self.length : self.length + 2] = ids
        self._ids[self.length + 2 : end] = proposal[: k - 1]
        self.length = end
        return proposal

    def rollback(self, length: int) -> None:
        self.length = min(self.length, length)  # stale columns are overwritten before they are attended


class EngineRows:
    """`batch_size` rows of the batch cache, each its own sequence; the caller passes each row's `positions`
    (rollback is a smaller one). Position p is column p + `offset`; offset 1 lets a step start at -1, so a
    one-token row can re-feed the token before it. Shares `generate_batch`'s cache: one at a time."""

    def __init__(self, engine: Engine, batch_size: int, offset: int):
        if batch_size > engine.max_batch_size:
            raise ValueError(f"{batch_size} rows exceed the engine's max_batch_size {engine.max_batch_size}")
        self.runner, self.device = engine.batch_runner(), engine.device
        self.batch_size, self.offset, self.vocab_size = batch_size, offset, engine.vocab_size
        self.max_length = engine.max_seq_len - offset  # positions a row can hold
        self.pad = torch.full((batch_size,), offset, dtype=torch.long, device=self.device)

    def _columns(self, positions: list[int], num_tokens: int) -> tuple[Tensor, int]:
        end = max(positions) + num_tokens + self.offset
        if end > self.runner.cache.max_seq_len:
            raise ValueError(f"a row of {end - self.offset} positions exceeds the engine's max_seq_len "
                             f"{self.max_length}")
        start = torch.tensor(positions, dtype=torch.long) + self.offset
        return start.to(self.device, non_blocking=True), end

    @torch.inference_mode()
    def prefill(self, first_row: int, prompts: list[list[int]], pad_token_id: int = 0) -> None:
        """Cache prompts[i] at positions 0.. of row first_row + i, eagerly, right-padded; no logits."""
        width = max(len(p) for p in prompts)
        if width == 0:
            return
        ids = torch.full((len(prompts), width), pad_token_id, dtype=torch.long)
        for i, prompt in enumerate(prompts):
            ids[i, : len(prompt)] = torch.tensor(prompt, dtype=torch.long)
        start, end = self._columns([0], width)
        cache = self.runner.cache.rows(first_row, first_row + len(prompts))
        self.runner.decoder(ids.to(self.device), start, self.pad[: len(prompts)], cache, self.runner.kv_len(end),
                            last_only=True)

    def forward(self, input_ids: Tensor, positions: list[int]) -> Tensor:
        """input_ids [B, T] at positions[b].. of every row. Returns logits [B, T, V], valid until the next call."""
        start, end = self._columns(positions, input_ids.shape[1])
        return self.runner.step_rows(input_ids, start, self.pad, end)

    def propose(self, input_ids: Tensor, positions: list[int], uniforms: Tensor, temperature: float,
                top_p: float) -> tuple[Tensor, Tensor | None]:
        """Feed input_ids [B, 2] at positions[b].., then propose k tokens (`StepRunner.propose_rows`)."""
        start, end = self._columns(positions, uniforms.shape[1] + 1)
        return self.runner.propose_rows(input_ids, start, self.pad, end, uniforms, temperature, top_p)


class Engine:
    """A causal LM served by the native decoder; max_batch_size: rows of the batch cache."""

    def __init__(self, decoder: Decoder, *, max_seq_len: int, max_batch_size: int = 64,
                 use_cuda_graphs: bool = True, compile_layers: bool = False,
                 dependent_launch_steps: frozenset[str] = DEPENDENT_LAUNCH_STEPS):
        self.decoder, self.max_seq_len, self.max_batch_size = decoder, max_seq_len, max_batch_size
        self.dependent_launch_steps = dependent_launch_steps
        if compile_layers:
            decoder.compile_layers()
        self.use_cuda_graphs = use_cuda_graphs
        self.vocab_size = decoder.shape.vocab_size
        self._epoch = 0
        self._session_runner: StepRunner | None = None
        self._batch_runner: StepRunner | None = None
        self._zero_pad = torch.zeros(1, dtype=torch.long, device=self.device)
        self._positions = torch.arange(max_seq_len, device=self.device)  # a session's start columns, as views

    @classmethod
    def from_hf(cls, model, *, max_seq_len: int, max_batch_size: int = 64, use_cuda_graphs: bool = True,
                compile_layers: bool = False, dtype: torch.dtype | None = None, weights: str = MODEL_DTYPE,
                device: torch.device | None = None,
                dependent_launch_steps: frozenset[str] = DEPENDENT_LAUNCH_STEPS) -> Engine:
        """Serve a loaded Hugging Face model (adapters merged); weights as `Decoder` takes them."""
        return cls(Decoder.from_hf(model, dtype=dtype, device=device, weights=weights), max_seq_len=max_seq_len,
                   max_batch_size=max_batch_size, use_cuda_graphs=use_cuda_graphs, compile_layers=compile_layers,
                   dependent_launch_steps=dependent_launch_steps)

    @property
    def device(self) -> torch.device:
        return self.decoder.embed.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.decoder.embed.weight.dtype

    def parameters(self):
        return self.decoder.parameters()

    def _runner(self, batch_size: int) -> StepRunner:
        return StepRunner(self.decoder, KVCache(self.decoder.shape, batch_size, self.max_seq_len, self.dtype,
                                                self.device), use_cuda_graphs=self.use_cuda_graphs,
                          dependent_launch_steps=self.dependent_launch_steps)

    def session_runner(self) -> StepRunner:
        if self._session_runner is None:
            self._session_runner = self._runner(1)
        return self._session_runner

    def batch_runner(self) -> StepRunner:
        if self._batch_runner is None:
            self._batch_runner = self._runner(self.max_batch_size)
        return self._batch_runner

    def open_session(self, max_length: int) -> EngineSession:
        if max_length > self.max_seq_len:
            raise ValueError(f"a session of {max_length} positions exceeds the engine's max_seq_len "
                             f"{self.max_seq_len}")
        self.session_runner()
        self._epoch += 1
        return EngineSession(self, self._epoch)

    def open_rows(self, batch_size: int, offset: int = 0) -> EngineRows:
        return EngineRows(self, batch_size, offset)

    def warm_up(self, num_speculative_tokens: list[int], prompt_lengths: Iterable[int] = ()) -> None:
        """Capture, before any timing, every graph batch-1 decoding can replay with k' <= max(k) at every KV
        bucket, and the prefills of prompts of these lengths as target (prompt + k') or draft (prompt - 2)
        (eager off a GPU). It writes only columns a session overwrites before attending them."""
        runner, pad = self.session_runner(), self._zero_pad
        max_k = max(num_speculative_tokens, default=0)
        widths = {runner.prefill_width(0, n) for p in prompt_lengths for n in range(p - 2, p + max_k + 1)} - {None}
        for width in sorted(widths):
            ids = torch.zeros(1, width, dtype=torch.long, device=self.device)
            runner.prefill(ids, self._positions[:1], pad, width)
        sizes = sorted({1, 2} | {k + 1 for k in range(1, max_k + 1)})
        zeros = torch.zeros(1, max(sizes), dtype=torch.long, device=self.device)
        for kv_len in runner.kv_buckets():
            for num_tokens in sizes:
                if num_tokens <= min(kv_len, MAX_GRAPH_TOKENS):
                    start = kv_len - num_tokens
                    runner.step_rows(zeros[:, :num_tokens], self._positions[start : start + 1], pad, kv_len)
            for k in range(1, min(max_k, kv_len - 1) + 1):
                start = kv_len - k - 1
                runner.propose_rows(zeros[:, :2], self._positions[start : start + 1], pad, kv_len,
                                    torch.zeros(1, k, device=self.device), 0.0, 1.0)

    @property
    def num_graphs(self) -> int:
        """CUDA graphs captured so far, batch-1 and batched steps together (0 off a GPU)."""
        return sum(r.num_graphs for r in (self._session_runner, self._batch_runner) if r is not None)

    @property
    def num_graph_shapes(self) -> int:
        """Graph-sized shapes batch-1 decoding has met so far."""
        return len(self._session_runner.shapes_met) if self._session_runner is not None else 0

    @torch.inference_mode()
    def generate_batch(self, prompts: list[list[int]], *, max_new_tokens: int, temperature: float = 0.0,
                       eos_token_id: int | None = None, pad_token_id: int = 0,
                       generator: torch.Generator | None = None, top_p: float = 1.0) -> list[list[int]]:
        """Generate for up to `max_batch_size` left-padded prompts; returns each one's new tokens, eos included."""
        if len(prompts) > self.max_batch_size:
            raise ValueError(f"{len(prompts)} prompts exceed max_batch_size {self.max_batch_size}")
        width = max(len(p) for p in prompts)
        if width + max_new_tokens > self.max_seq_len:
            raise ValueError(f"prompt ({width}) + max_new_tokens ({max_new_tokens}) exceeds max_seq_len "
                             f"{self.max_seq_len}")
        runner, device = self.batch_runner(), self.device
        input_ids, pad = left_pad(prompts, pad_token_id)  # [B, width], [B]
        pad = pad.to(device)

        def choose(logits: Tensor) -> Tensor:  # [B, V] -> [B]
            if temperature == 0:
                return logits.argmax(dim=-1)
            return torch.multinomial(probabilities(logits, temperature, top_p), 1, generator=generator)[:, 0]

        token = choose(runner.step(input_ids.to(device), 0, pad, last_only=True)[:, -1])  # prefill, eager
        eos = torch.tensor(-1 if eos_token_id is None else eos_token_id, device=device)
        done = token == eos
        generated = [token]
        for step in range(1, max_new_tokens):
            if step % 16 == 0 and bool(done.all()):
                break
            logits = runner.step(token[:, None], width + step - 1, pad)[:, 0]  # [B, V]
            token = torch.where(done, eos.clamp_min(0), choose(logits))
            done = done | (token == eos)
            generated.append(token)
        rows = torch.stack(generated, dim=1).tolist()  # [B, new]
        return [cut_at_eos(row, eos_token_id) for row in rows]
