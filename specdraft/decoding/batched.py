"""Batched speculative decoding on the native engine (continuous batching), and the target alone scheduled alike."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor

from specdraft.decoding.batching import eos_set, truncate_at_eos
from specdraft.decoding.metrics import SpecStats
from specdraft.decoding.verification import SyntheticAcceptance, check_acceptance, verify


@dataclass
class RequestTiming:
    """When a prompt was admitted, got its first new token and finished: seconds since the run began (host clock)."""

    admitted_s: float = 0.0
    first_token_s: float = 0.0
    finished_s: float = 0.0


@dataclass
class BatchOutput:
    token_ids: Tensor  # [num_new_tokens], eos included if produced
    stats: SpecStats
    timing: RequestTiming


def speculative_generate_batch(target, draft, prompts: list[list[int]], *, num_speculative_tokens: int,
                               max_new_tokens: int, concurrency: int, temperature: float = 0.0,
                               eos_token_id: int | list[int] | None = None,
                               generator: torch.Generator | None = None, top_p: float = 1.0,
                               pad_token_id: int = 0,
                               acceptance: SyntheticAcceptance | None = None) -> list[BatchOutput]:
    """`speculative_generate` for many prompts on `Engine`s, `concurrency` rows in flight; outputs in prompt order."""
    if num_speculative_tokens < 1:
        raise ValueError(f"num_speculative_tokens must be >= 1, got {num_speculative_tokens}")
    check_acceptance(acceptance, temperature)
    return _generate_rows(target, draft, prompts, num_speculative_tokens, max_new_tokens, concurrency, temperature,
                          top_p, eos_token_id, generator, pad_token_id, acceptance)


def autoregressive_generate_batch(target, prompts: list[list[int]], *, max_new_tokens: int, concurrency: int,
                                  temperature: float = 0.0, eos_token_id: int | list[int] | None = None,
                                  generator: torch.Generator | None = None, top_p: float = 1.0,
                                  pad_token_id: int = 0) -> list[BatchOutput]:
    """The target alone, scheduled exactly as `speculative_generate_batch` schedules: its baseline."""
    return _generate_rows(target, None, prompts, 0, max_new_tokens, concurrency, temperature, top_p, eos_token_id,
                          generator, pad_token_id)


def _open_rows(model, batch_size: int, offset: int):
    open_rows = getattr(model, "open_rows", None)
    if open_rows is None:
        raise ValueError("batched decoding (bench.concurrency > 1) runs on the native engine only; use "
                         "engine 'native' or 'auto' with a Qwen2, Qwen3 or Llama model")
    return open_rows(batch_size, offset)


@torch.inference_mode()
def _generate_rows(target, draft, prompts: list[list[int]], k: int, max_new_tokens: int, concurrency: int,
                   temperature: float, top_p: float, eos_token_id, generator, pad_token_id: int,
                   acceptance: SyntheticAcceptance | None = None) -> list[BatchOutput]:
    """The loop behind both batched generators (k = 0: the target alone). Target rows cache seq[:-1], draft rows
    seq[:-2] and re-feed seq[-2:], so a step is one graph per model whatever each row accepted, and one sync."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    if not prompts or min(len(p) for p in prompts) < 1:
        raise ValueError("every prompt needs at least one token")
    eos = eos_set(eos_token_id)
    num_rows = min(concurrency, len(prompts))
    target_rows = _open_rows(target, num_rows, 0)
    draft_rows = _open_rows(draft, num_rows, 1) if k else None
    if draft_rows is not None and draft_rows.vocab_size != target_rows.vocab_size:
        raise ValueError(f"draft vocabulary ({draft_rows.vocab_size} rows) differs from the target's "
                         f"({target_rows.vocab_size}); pad the draft with specdraft.models.loading.pad_vocab first")
    need = max(len(p) for p in prompts) + max_new_tokens + k  # a row may overrun by one step before it is cut
    for rows in (target_rows, draft_rows):
        if rows is not None and need > rows.max_length:
            raise ValueError(f"prompt + max_new_tokens + k = {need} positions exceed the engine's max_seq_len "
                             f"({rows.max_length} usable)")
    device = target_rows.device
    waiting = list(range(len(prompts)))[::-1]  # popped from the end: prompts in order
    request: list[int | None] = [None] * num_rows  # row -> prompt index
    seqs: list[list[int]] = [[] for _ in range(num_rows)]
    outputs: list[BatchOutput | None] = [None] * len(prompts)
    stats = [SpecStats() for _ in prompts]
    timings = [RequestTiming() for _ in prompts]
    began = time.perf_counter()

    def admit(free: list[int]) -> None:
        """Give the free rows the next waiting prompts; prefill each run of consecutive rows together."""
        now = time.perf_counter() - began
        taken = []
        for row in free:
            if not waiting:
                break
            i = waiting.pop()
            request[row], seqs[row] = i, list(prompts[i])
            timings[i].admitted_s = now
            taken.append(row)
        runs: list[list[int]] = []
        for row in taken:
            if runs and runs[-1][-1] == row - 1:
                runs[-1].append(row)
            else:
                runs.append([row])
        for run in runs:
            target_rows.prefill(run[0], [seqs[r][:-1] for r in run], pad_token_id)
            if draft_rows is not None:
                draft_rows.prefill(run[0], [seqs[r][:-2] for r in run], pad_token_id)

    admit(list(range(num_rows)))
    zeros = torch.zeros(num_rows, k, device=device)
    while any(i is not None for i in request):
        active = [row for row in range(num_rows) if request[row] is not None]
        lengths = [len(seqs[row]) if request[row] is not None else 1 for row in range(num_rows)]  # idle: 1
        last = torch.tensor([seqs[row][-1] if request[row] is not None else pad_token_id
                             for row in range(num_rows)], dtype=torch.long).to(device)  # [B]
        proposal, draft_probs = last.new_zeros(num_rows, 0), None
        if draft_rows is not None:
            before = torch.tensor([seqs[row][-2] if request[row] is not None and lengths[row] > 1
                                   else pad_token_id for row in range(num_rows)], dtype=torch.long).to(device)
            uniforms = zeros if temperature == 0 else torch.rand(num_rows, k, generator=generator, device=device)
            proposal, draft_probs = draft_rows.propose(torch.stack((before, last), dim=1),
                                                       [n - 2 for n in lengths], uniforms, temperature, top_p)
        target_logits = target_rows.forward(torch.cat((last[:, None], proposal), dim=1),
                                            [n - 1 for n in lengths])  # [B, k+1, V]
        num_accepted, next_token = verify(proposal, target_logits, draft_probs, temperature=temperature, top_p=top_p,
                                          generator=generator, acceptance=acceptance)  # [B], [B]
        verdicts = torch.cat((proposal, num_accepted[:, None], next_token[:, None]), dim=1).tolist()  # one sync
        now = time.perf_counter() - began
        finished = []
        for row in active:
            i = request[row]
            *proposed, n, token = verdicts[row]
            remaining = max_new_tokens - (len(seqs[row]) - len(prompts[i]))
            k_row = min(k, remaining - 1)  # as `speculative_generate` counts: never past max_new_tokens
            new_ids, stop = truncate_at_eos((proposed[:n] + [token])[:remaining], eos)
            stats[i].observe(k_row, min(n, k_row))  # before the stop check, as vLLM counts
            if len(seqs[row]) == len(prompts[i]):
                timings[i].first_token_s = now
            seqs[row] += new_ids
            if stop or len(new_ids) == remaining:
                timings[i].finished_s = now
                outputs[i] = BatchOutput(torch.tensor(seqs[row][len(prompts[i]):], dtype=torch.long), stats[i],
                                         timings[i])
                request[row] = None
                finished.append(row)
        if finished and waiting:
            admit(finished)
    return outputs
