"""Speculative decoding over Hugging Face causal LMs (batch 1), and the plain autoregressive reference.

Each step the draft proposes k tokens with its own KV cache, the target verifies them in one forward over
k+1 positions, and both caches are rolled back past the first rejection. Every cache holds the KV of
`seq[:-1]` or less; what a model has not seen yet is fed at its next forward, so no separate prefill or
catch-up path exists and rollback is one call per session. Models are reached through `Session`s, so the
same loop drives Hugging Face models and the native engine. Tokens stay on the device from proposal to
verdict; the host waits for the device once per step, to read the verdict (greedy decoding).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import Tensor

from specdraft.decoding.sessions import Session, open_session
from specdraft.decoding.verification import SyntheticAcceptance, probabilities, rejection_sample_batch, verify_greedy_batch


@dataclass
class SpecStats:
    """Counts over the steps of one or more generations, as vLLM counts them (its scheduler records a
    step's spec-decode stats before its stop check): a step's proposed tokens are the draft tokens it
    scheduled for verification (k, fewer where max_new_tokens leaves less room), and its accepted tokens
    are every draft token verification accepted, those after an accepted eos included (they are verified,
    then cut by the stop check, so the step emits fewer tokens than accepted + 1)."""

    num_proposed: int = 0
    num_accepted: int = 0
    num_steps: int = 0
    # num_accepted_per_position[i]: steps whose proposal was accepted up to and including position i.
    num_accepted_per_position: list[int] = field(default_factory=list)

    def observe(self, num_proposed: int, num_accepted: int) -> None:
        self.num_proposed += num_proposed
        self.num_accepted += num_accepted
        self.num_steps += 1
        if len(self.num_accepted_per_position) < num_proposed:
            self.num_accepted_per_position += [0] * (num_proposed - len(self.num_accepted_per_position))
        for i in range(num_accepted):
            self.num_accepted_per_position[i] += 1

    @property
    def acceptance_rate(self) -> float:
        """accepted / proposed."""
        return self.num_accepted / self.num_proposed if self.num_proposed else 0.0

    @property
    def mean_acceptance_length(self) -> float:
        """1 + accepted / steps: tokens gained per target forward, the recovered or bonus token included."""
        return 1 + self.num_accepted / self.num_steps if self.num_steps else 0.0


@dataclass
class SpecOutput:
    token_ids: Tensor  # [num_new_tokens], eos included if produced
    stats: SpecStats


@dataclass
class Timeline:
    """Readings of one generation, for TTFT, ITL and the draft / verification split; recording them adds no
    synchronisation with the device.

    A token's time is the host's `time.perf_counter()` right after it has read the token's value from the
    device, a point where it waits for the device anyway. A speculative step's proposal and verification are
    timed on the device's own clock (CUDA events, read once the generation is over; off a GPU, where every
    operation has finished when it returns, the host clock): from the end of the previous verification (the
    start of the loop for the first step) to the end of the proposal, then to the end of the verification.
    """

    token_times: list[float] = field(default_factory=list)  # when each new token reached the host
    # Speculative steps only, one entry per step: tokens proposed and accepted, and the seconds of the
    # proposal (draft) and of the verification (the target's forward and the accept/reject decision).
    num_proposed: list[int] = field(default_factory=list)
    num_accepted: list[int] = field(default_factory=list)
    proposal_seconds: list[float] = field(default_factory=list)
    verification_seconds: list[float] = field(default_factory=list)


class _DeviceClock:
    """Marks points in the device's stream of work without waiting for it: CUDA events on a GPU (their times
    are read once, at the end), the host clock elsewhere (a CPU operation has finished when it returns)."""

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


def _eos_set(eos_token_id: int | list[int] | None) -> set[int]:
    if eos_token_id is None:
        return set()
    return {eos_token_id} if isinstance(eos_token_id, int) else set(eos_token_id)


def _truncate_at_eos(new_ids: list[int], eos: set[int]) -> tuple[list[int], bool]:
    for i, t in enumerate(new_ids):
        if t in eos:
            return new_ids[: i + 1], True
    return new_ids, False


@torch.inference_mode()
def autoregressive_generate(model, input_ids: Tensor, *, max_new_tokens: int, temperature: float = 0.0,
                            eos_token_id: int | list[int] | None = None, generator: torch.Generator | None = None,
                            top_p: float = 1.0, timeline: Timeline | None = None) -> Tensor:
    """Plain decoding, one forward per token: the reference speculative decoding must reproduce.

    input_ids: [1, prompt_len]; returns [num_new_tokens]. `timeline`, if given, receives each token's time.
    """
    eos, seq = _eos_set(eos_token_id), input_ids[0].tolist()
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
    """k draft tokens [k] after `pending` (the draft's unseen tokens, on the device), and (sampling only) the
    draft's distributions [k, V] they were drawn from."""
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
    """Generate with `draft` proposing and `target` verifying.

    target, draft: Hugging Face causal LMs or `specdraft.engine.Engine`s sharing a tokenizer and vocabulary
    size; input_ids: [1, prompt_len]. Greedy output equals the target's own greedy decoding; with
    temperature > 0 the output follows the target's sampling distribution at that temperature and top_p
    (Leviathan et al. 2023), both models' distributions being warped alike before verification.
    `timeline`, if given, receives each token's time and each step's proposal and verification seconds.
    `acceptance` (benchmarks only, greedy only) replaces verification's verdict by a synthetic one.

    The proposal, the verification input and the verdict stay on the device; the host reads each step's
    proposal, accepted count and next token in one go, its one wait for the device per step (greedy; the
    sampler's draws add their own).
    """
    if num_speculative_tokens < 1:
        raise ValueError(f"num_speculative_tokens must be >= 1, got {num_speculative_tokens}")
    _check_acceptance(acceptance, temperature)
    if input_ids.dim() != 2 or input_ids.shape[0] != 1:
        raise ValueError(f"input_ids must have shape [1, prompt_len], got {list(input_ids.shape)}")
    eos, seq = _eos_set(eos_token_id), input_ids[0].tolist()
    prompt_len = len(seq)
    target_session = open_session(target, prompt_len + max_new_tokens)
    draft_session = open_session(draft, prompt_len + max_new_tokens)
    vocab_size = target_session.vocab_size
    if draft_session.vocab_size != vocab_size:
        raise ValueError(
            f"draft vocabulary ({draft_session.vocab_size} rows) differs from the target's ({vocab_size}); "
            "pad the draft with specdraft.models.loading.pad_vocab first")
    # The sequence on the device, `seq` there: the sessions' inputs are slices of it, not copies of host lists.
    # A step writes its proposal after the sequence, verifies it in place, then writes the next token after
    # the accepted ones.
    ids = torch.empty(prompt_len + max_new_tokens, dtype=torch.long, device=target_session.device)
    ids[:prompt_len] = input_ids[0]
    stats = SpecStats()
    clock = _DeviceClock(ids.device) if timeline is not None else None
    if clock is not None:
        clock.mark()
    while (num_new := len(seq) - prompt_len) < max_new_tokens:
        # Never propose past max_new_tokens: the last step's recovered/bonus token is the target's own.
        k = min(num_speculative_tokens, max_new_tokens - num_new - 1)
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
        if acceptance is not None:
            num_accepted, next_token = acceptance.verify(proposal, target_logits)
        elif temperature == 0:
            num_accepted, next_token = verify_greedy_batch(proposal, target_logits)  # [1], [1]
        else:
            target_probs = probabilities(target_logits, temperature, top_p)  # [1, k+1, V]
            draft_probs = target_probs.new_zeros(1, 0, vocab_size) if draft_probs is None else draft_probs[None]
            num_accepted, next_token = rejection_sample_batch(proposal, draft_probs, target_probs, generator)
        if clock is not None:
            clock.mark()
        *proposed, accepted, token = torch.cat((proposal[0], num_accepted, next_token)).tolist()  # one read
        ids[n + accepted : n + accepted + 1] = next_token
        new_ids, stop = _truncate_at_eos(proposed[:accepted] + [token], eos)
        stats.observe(k, accepted)  # before the stop check, as vLLM counts
        seq += new_ids
        if timeline is not None:
            timeline.token_times += [time.perf_counter()] * len(new_ids)
            timeline.num_proposed.append(k)
            timeline.num_accepted.append(accepted)
        # Rollback: keep the KV of accepted tokens only; the newest token is fed at the next step.
        target_session.rollback(len(seq) - 1)
        draft_session.rollback(len(seq) - 1)
        if stop:
            break
    if clock is not None:
        intervals = clock.intervals()  # proposal, verification, proposal, ...
        timeline.proposal_seconds += intervals[0::2]
        timeline.verification_seconds += intervals[1::2]
    return SpecOutput(token_ids=torch.tensor(seq[prompt_len:], dtype=torch.long), stats=stats)


# Batched speculative decoding: many sequences at once, each at its own length, on the native engine.


@dataclass
class RequestTiming:
    """When one prompt of a batched run was admitted (its prefill began), got its first new token and
    finished, in seconds since the run began (host clock, read after the step's device synchronisation)."""

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
                               pad_token_id: int = 0, acceptance: SyntheticAcceptance | None = None) -> list[BatchOutput]:
    """`speculative_generate` for many prompts, `concurrency` of them in flight at once.

    target, draft: `specdraft.engine.Engine`s with max_batch_size >= concurrency. Each row keeps its own
    length (ragged rollback) and leaves the batch at its eos or max_new_tokens; the next waiting prompt
    takes its row (continuous batching). Every row's greedy output equals its own `speculative_generate`
    (and target greedy) output; sampled rows follow the target's distribution (Leviathan et al., per row).
    Returns one output per prompt, in order. `acceptance`: as in `speculative_generate`.
    """
    if num_speculative_tokens < 1:
        raise ValueError(f"num_speculative_tokens must be >= 1, got {num_speculative_tokens}")
    _check_acceptance(acceptance, temperature)
    return _generate_rows(target, draft, prompts, num_speculative_tokens, max_new_tokens, concurrency, temperature,
                          top_p, eos_token_id, generator, pad_token_id, acceptance)


def autoregressive_generate_batch(target, prompts: list[list[int]], *, max_new_tokens: int, concurrency: int,
                                  temperature: float = 0.0, eos_token_id: int | list[int] | None = None,
                                  generator: torch.Generator | None = None, top_p: float = 1.0,
                                  pad_token_id: int = 0) -> list[BatchOutput]:
    """The target alone, one token per step, scheduled exactly as `speculative_generate_batch` schedules
    (the same rows, admissions and refills): the baseline it is measured against."""
    return _generate_rows(target, None, prompts, 0, max_new_tokens, concurrency, temperature, top_p, eos_token_id,
                          generator, pad_token_id)


def _check_acceptance(acceptance: SyntheticAcceptance | None, temperature: float) -> None:
    if acceptance is not None and temperature != 0:
        raise ValueError("a synthetic acceptance replaces greedy verification: temperature must be 0")


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
    """The loop behind both batched generators; k = 0: the target alone (draft unused).

    Every target row caches seq[:-1]; a step feeds seq[-1] plus k proposals at position len(seq) - 1.
    Every draft row caches seq[:-2] at least: a proposal re-feeds seq[-2:] (seq[-2] is missing after a
    step that accepted everything), from position -1 when seq has one token (the draft's rows keep a
    hidden column before position 0 for that). So one step is one graph per model whatever each row
    accepted, and the host synchronises once per step, to read the verdicts.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    if not prompts or min(len(p) for p in prompts) < 1:
        raise ValueError("every prompt needs at least one token")
    eos = _eos_set(eos_token_id)
    num_rows = min(concurrency, len(prompts))
    target_rows = _open_rows(target, num_rows, 0)
    draft_rows = _open_rows(draft, num_rows, 1) if k else None
    if draft_rows is not None and draft_rows.vocab_size != target_rows.vocab_size:
        raise ValueError(f"draft vocabulary ({draft_rows.vocab_size} rows) differs from the target's "
                         f"({target_rows.vocab_size}); pad the draft with specdraft.models.loading.pad_vocab first")
    # A row may run past max_new_tokens by one step (k + 1 positions) before its output is cut.
    need = max(len(p) for p in prompts) + max_new_tokens + k
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
        if acceptance is not None:
            num_accepted, next_token = acceptance.verify(proposal, target_logits)
        elif temperature == 0:
            num_accepted, next_token = verify_greedy_batch(proposal, target_logits)
        else:
            target_probs = probabilities(target_logits, temperature, top_p)  # [B, k+1, V]
            if draft_probs is None:
                draft_probs = target_probs.new_zeros(num_rows, 0, target_probs.shape[-1])
            num_accepted, next_token = rejection_sample_batch(proposal, draft_probs, target_probs, generator)
        verdicts = torch.cat((proposal, num_accepted[:, None], next_token[:, None]), dim=1).tolist()  # one sync
        now = time.perf_counter() - began
        finished = []
        for row in active:
            i = request[row]
            *proposed, n, token = verdicts[row]
            remaining = max_new_tokens - (len(seqs[row]) - len(prompts[i]))
            # As `speculative_generate` would: never propose past max_new_tokens (k clipped to remaining - 1).
            k_row = min(k, remaining - 1)
            new_ids, stop = _truncate_at_eos((proposed[:n] + [token])[:remaining], eos)
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
