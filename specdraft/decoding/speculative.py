"""Speculative decoding of one sequence (batch 1), and the plain autoregressive reference. Every cache holds
seq[:-1] or less and unseen tokens are fed at the next forward, so there is no prefill path and rollback is one call."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import Tensor

from specdraft.decoding.batching import eos_set, truncate_at_eos
from specdraft.decoding.metrics import SpecStats
from specdraft.decoding.sessions import Session, open_session
from specdraft.decoding.verification import SyntheticAcceptance, check_acceptance, probabilities, verify


@dataclass
class SpecOutput:
    token_ids: Tensor  # [num_new_tokens], eos included if produced
    stats: SpecStats


@dataclass
class Timeline:
    """Readings of one generation where the host waits anyway: token times (host clock), step phases (device's)."""

    token_times: list[float] = field(default_factory=list)  # when each new token reached the host
    num_proposed: list[int] = field(default_factory=list)  # this and the rest: speculative steps, one entry each
    num_accepted: list[int] = field(default_factory=list)
    proposal_seconds: list[float] = field(default_factory=list)
    verification_seconds: list[float] = field(default_factory=list)


class _DeviceClock:
    """Marks in the device's stream of work without waiting for it: CUDA events on a GPU, else the host clock."""

    def __init__(self, device: torch.device):
        self.cuda, self.marks = device.type == "cuda", []

    def mark(self) -> None:
        if self.cuda:
            self.marks.append(torch.cuda.Event(enable_timing=True))
            self.marks[-1].record()
        else:
            self.marks.append(time.perf_counter())

    def intervals(self) -> list[float]:
        """Seconds between consecutive marks; on a GPU, call after the device has passed the last mark."""
        if self.cuda:
            return [a.elapsed_time(b) / 1e3 for a, b in zip(self.marks, self.marks[1:])]
        return [b - a for a, b in zip(self.marks, self.marks[1:])]


@torch.inference_mode()
def autoregressive_generate(model, input_ids: Tensor, *, max_new_tokens: int, temperature: float = 0.0,
                            eos_token_id: int | list[int] | None = None, generator: torch.Generator | None = None,
                            top_p: float = 1.0, timeline: Timeline | None = None) -> Tensor:
    """Plain decoding, one forward per token: the reference speculative decoding must reproduce."""
    eos, seq = eos_set(eos_token_id), input_ids[0].tolist()
    prompt_len = len(seq)
    session = open_session(model, prompt_len + max_new_tokens)
    pending = input_ids[0]  # what the session has not seen: the prompt, then each new token, on the device
    while len(seq) - prompt_len < max_new_tokens:
        logits = session.forward(pending, 1)[0]  # [V]
        if temperature == 0:
            pending = logits.argmax(dim=-1, keepdim=True)  # [1]
        else:
            pending = torch.multinomial(probabilities(logits, temperature, top_p), 1, generator=generator)  # [1]
        token = int(pending)  # the host's one read per token
        seq.append(token)
        if timeline is not None:
            timeline.token_times.append(time.perf_counter())
        if token in eos:
            break
    return torch.tensor(seq[prompt_len:], dtype=torch.long)


def _propose(draft: Session, pending: Tensor, k: int, temperature: float, top_p: float,
             generator: torch.Generator | None) -> tuple[Tensor, Tensor | None]:
    """k draft tokens [k] after `pending`, and (sampling only) the distributions [k, V] they were drawn from."""
    if temperature == 0:
        return draft.propose_greedy(pending, k), None
    draft_ids, draft_probs = [], []
    for _ in range(k):
        probs = probabilities(draft.forward(pending, 1)[0], temperature, top_p)  # [V]
        pending = torch.multinomial(probs, 1, generator=generator)  # [1]
        draft_ids.append(pending)
        draft_probs.append(probs)
    return torch.cat(draft_ids), torch.stack(draft_probs)


@torch.inference_mode()
def speculative_generate(target, draft, input_ids: Tensor, *, num_speculative_tokens: int, max_new_tokens: int,
                         temperature: float = 0.0, eos_token_id: int | list[int] | None = None,
                         generator: torch.Generator | None = None, top_p: float = 1.0,
                         timeline: Timeline | None = None,
                         acceptance: SyntheticAcceptance | None = None) -> SpecOutput:
    """Generate with `draft` proposing and `target` verifying: greedy output equals the target's, sampled output
    follows its distribution. `acceptance` (benchmarks, greedy only) replaces the verdict by a synthetic one."""
    if num_speculative_tokens < 1:
        raise ValueError(f"num_speculative_tokens must be >= 1, got {num_speculative_tokens}")
    check_acceptance(acceptance, temperature)
    if input_ids.dim() != 2 or input_ids.shape[0] != 1:
        raise ValueError(f"input_ids must have shape [1, prompt_len], got {list(input_ids.shape)}")
    eos, seq = eos_set(eos_token_id), input_ids[0].tolist()
    prompt_len = len(seq)
    target_session = open_session(target, prompt_len + max_new_tokens)
    draft_session = open_session(draft, prompt_len + max_new_tokens)
    vocab_size = target_session.vocab_size
    if draft_session.vocab_size != vocab_size:
        raise ValueError(
            f"draft vocabulary ({draft_session.vocab_size} rows) differs from the target's ({vocab_size}); "
            "pad the draft with specdraft.models.loading.pad_vocab first")
    # `seq` on the device: sessions read slices of it, and a step writes its proposal and next token in place.
    ids = torch.empty(prompt_len + max_new_tokens, dtype=torch.long, device=target_session.device)
    ids[:prompt_len] = input_ids[0]
    stats = SpecStats()
    clock = _DeviceClock(ids.device) if timeline is not None else None
    if clock is not None:
        clock.mark()
    while (num_new := len(seq) - prompt_len) < max_new_tokens:
        k = min(num_speculative_tokens, max_new_tokens - num_new - 1)  # the last token is the target's own
        n = len(seq)
        draft_probs = None
        if k:
            draft_ids, draft_probs = _propose(draft_session, ids[draft_session.length : n], k, temperature, top_p,
                                              generator)
            ids[n : n + k] = draft_ids
        proposal = ids[None, n : n + k]  # [1, k]
        if clock is not None:
            clock.mark()
        target_logits = target_session.forward(ids[target_session.length : n + k], k + 1)[None]  # [1, k+1, V]
        num_accepted, next_token = verify(proposal, target_logits, None if draft_probs is None else draft_probs[None],
                                          temperature=temperature, top_p=top_p, generator=generator,
                                          acceptance=acceptance)  # [1], [1]
        if clock is not None:
            clock.mark()
        *proposed, accepted, token = torch.cat((proposal[0], num_accepted, next_token)).tolist()  # one read
        ids[n + accepted : n + accepted + 1] = next_token
        new_ids, stop = truncate_at_eos(proposed[:accepted] + [token], eos)
        stats.observe(k, accepted)  # before the stop check, as vLLM counts
        seq += new_ids
        if timeline is not None:
            timeline.token_times += [time.perf_counter()] * len(new_ids)
            timeline.num_proposed.append(k)
            timeline.num_accepted.append(accepted)
        target_session.rollback(len(seq) - 1)  # the newest token is fed at the next step
        draft_session.rollback(len(seq) - 1)
        if stop:
            break
    if clock is not None:
        intervals = clock.intervals()  # proposal, verification, proposal, ...
        timeline.proposal_seconds += intervals[0::2]
        timeline.verification_seconds += intervals[1::2]
    return SpecOutput(token_ids=torch.tensor(seq[prompt_len:], dtype=torch.long), stats=stats)
