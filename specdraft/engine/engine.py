"""The native engine: a `Decoder` with static KV caches and CUDA-graph steps, behind the same interfaces
as a Hugging Face model: `open_session` for `speculative_generate`, `generate_batch` for batched decoding."""

from __future__ import annotations

import torch
from torch import Tensor

from specdraft.engine.decoder import Decoder, KVCache
from specdraft.engine.runner import MAX_GRAPH_TOKENS, StepRunner
from specdraft.generation import cut_at_eos, left_pad
from specdraft.verification import probabilities


class EngineSession:
    """One sequence in the engine's batch-1 cache. A newer session on the same engine supersedes it."""

    def __init__(self, engine: Engine, epoch: int):
        self.engine, self.epoch, self.length = engine, epoch, 0
        self.vocab_size = engine.vocab_size

    def _runner(self) -> StepRunner:
        if self.epoch != self.engine._epoch:
            raise RuntimeError("this session was superseded by a newer one on the same engine; "
                               "use one Engine per concurrent sequence")
        return self.engine._session_runner

    def forward(self, token_ids: list[int], num_logits: int) -> Tensor:
        runner = self._runner()
        ids = torch.tensor([token_ids], dtype=torch.long, device=runner.cache.device)  # [1, T]
        logits = runner.step(ids, self.length, self.engine._zero_pad, last_only=num_logits == 1)
        self.length += len(token_ids)
        return logits[0, -num_logits:]

    def propose_greedy(self, pending: list[int], k: int) -> list[int]:
        """Feed `pending` and return the k greedy tokens after it, as one graph replay."""
        if len(pending) > 1:
            self.forward(pending[:-1], 1)
        runner = self._runner()
        last = torch.tensor([pending[-1:]], dtype=torch.long, device=runner.cache.device)  # [1, 1]
        proposed = runner.propose_greedy(last, self.length, self.engine._zero_pad, k)[0].tolist()
        self.length += k
        return proposed

    def rollback(self, length: int) -> None:
        self.length = min(self.length, length)  # stale columns are overwritten before they are attended


class Engine:
    """A causal LM served by the native decoder.

    max_seq_len: positions per sequence (prompt + generated); max_batch_size: rows of `generate_batch`'s cache.
    """

    def __init__(self, decoder: Decoder, *, max_seq_len: int, max_batch_size: int = 64,
                 use_cuda_graphs: bool = True, compile_layers: bool = False):
        self.decoder, self.max_seq_len, self.max_batch_size = decoder, max_seq_len, max_batch_size
        if compile_layers:
            decoder.compile_layers()
        self.use_cuda_graphs = use_cuda_graphs
        self.vocab_size = decoder.shape.vocab_size
        self._epoch = 0
        self._session_runner: StepRunner | None = None
        self._batch_runner: StepRunner | None = None
        self._zero_pad = torch.zeros(1, dtype=torch.long, device=self.device)

    @classmethod
    def from_hf(cls, model, *, max_seq_len: int, max_batch_size: int = 64, use_cuda_graphs: bool = True,
                compile_layers: bool = False, dtype: torch.dtype | None = None) -> Engine:
        """Serve a loaded Hugging Face Qwen2/Llama model (adapters merged first) on its own device."""
        return cls(Decoder.from_hf(model, dtype=dtype), max_seq_len=max_seq_len, max_batch_size=max_batch_size,
                   use_cuda_graphs=use_cuda_graphs, compile_layers=compile_layers)

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
                                                self.device), use_cuda_graphs=self.use_cuda_graphs)

    def open_session(self, max_length: int) -> EngineSession:
        if max_length > self.max_seq_len:
            raise ValueError(f"a session of {max_length} positions exceeds the engine's max_seq_len "
                             f"{self.max_seq_len}")
        if self._session_runner is None:
            self._session_runner = self._runner(1)
        self._epoch += 1
        return EngineSession(self, self._epoch)

    def warm_up(self, num_speculative_tokens: list[int]) -> None:
        """Capture before any timing every CUDA graph that batch-1 decoding can replay, plain or speculative
        with any k' <= max(num_speculative_tokens) (the last steps propose fewer): at every KV bucket, one-token
        steps, a two-token step with the last logits only (a sampling draft catching up), verifications of
        k' + 1 tokens, and greedy proposals of k' tokens. Off a GPU it meets the same shapes, eagerly."""
        if self._session_runner is None:
            self._session_runner = self._runner(1)
        max_k = max(num_speculative_tokens, default=0)
        steps = [(1, True), (2, True)] + [(k + 1, False) for k in range(1, max_k + 1)]
        self._session_runner.warm_up([(n, last) for n, last in steps if n <= MAX_GRAPH_TOKENS],
                                     list(range(1, max_k + 1)))

    @property
    def num_graph_shapes(self) -> int:
        """Graph-sized shapes batch-1 decoding has met so far (each a CUDA-graph capture on a GPU)."""
        return len(self._session_runner.shapes_met) if self._session_runner is not None else 0

    @torch.inference_mode()
    def generate_batch(self, prompts: list[list[int]], *, max_new_tokens: int, temperature: float = 0.0,
                       eos_token_id: int | None = None, pad_token_id: int = 0,
                       generator: torch.Generator | None = None, top_p: float = 1.0) -> list[list[int]]:
        """Generate for up to `max_batch_size` prompts at once (left-padded); each row stops at its eos.

        Returns the new tokens of every prompt, eos included if produced.
        """
        if len(prompts) > self.max_batch_size:
            raise ValueError(f"{len(prompts)} prompts exceed max_batch_size {self.max_batch_size}")
        width = max(len(p) for p in prompts)
        if width + max_new_tokens > self.max_seq_len:
            raise ValueError(f"prompt ({width}) + max_new_tokens ({max_new_tokens}) exceeds max_seq_len "
                             f"{self.max_seq_len}")
        if self._batch_runner is None:
            self._batch_runner = self._runner(self.max_batch_size)
        runner, device = self._batch_runner, self.device
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
            # One host sync every 16 steps to notice that every row has finished.
            if step % 16 == 0 and bool(done.all()):
                break
            logits = runner.step(token[:, None], width + step - 1, pad)[:, 0]  # [B, V]
            token = torch.where(done, eos.clamp_min(0), choose(logits))
            done = done | (token == eos)
            generated.append(token)
        rows = torch.stack(generated, dim=1).tolist()  # [B, new]
        return [cut_at_eos(row, eos_token_id) for row in rows]
