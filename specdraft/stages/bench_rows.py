"""benchmark.csv: one row per problem and k (`BenchRow`), the rule that marks an output cut off, and the writer."""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass

from specdraft.data.answers import SEPARATOR
from specdraft.plumbing.atomic import atomic_path


@dataclass(frozen=True)
class BenchRow:
    """One problem decoded with k draft tokens, next to the target alone on the same prompt.

    Times are seconds (or ms where named so) of wall clock, the GPU synchronised before each clock read, each
    the median over `repeats` timings of the same run (the problem's runs timed in an order rotated across
    the target alone and each k, `specdraft.stages.bench_repeats.timing_order`); rates, the speedup and the
    cost model are computed from those medians. Counts and outputs are the same in every repeat (greedy, or sampling with
    one generator seed per problem and k; the first repeat's are kept and any difference is counted in
    benchmark_run.json). `ttft_ms` (time to first token: the call's start, prompt in, to the first new token
    on the host) and `itl_ms` (inter-token latency: the mean time between later tokens, (last - first) /
    (n - 1), vLLM's time per output token) are the speculative run's; `target_*` the target alone's. A
    speculative step delivers its tokens together, so its ITL averages over the step's tokens rather than
    reporting zero gaps.

    Counts are vLLM's (its scheduler takes them before its stop check): `num_proposed` is the draft tokens
    the steps scheduled for verification (k a step, fewer where max_new_tokens leaves less room),
    `num_accepted` the draft tokens verification accepted, those after an accepted eos included, and
    `num_steps` the target's verification forwards; acceptance_rate = accepted / proposed and
    mean_acceptance_length = 1 + accepted / steps.

    `truncated` (`target_truncated`): the speculative (target-alone) output was cut by bench.max_new_tokens
    before its answer: it is max_new_tokens tokens long, holds no eos, and its text has no `####` answer
    separator. Such an answer scores as wrong whatever the model would have written.
    """

    id: str
    k: int
    num_new_tokens: int  # the speculative run's output
    target_num_new_tokens: int  # the target alone's
    num_proposed: int
    num_accepted: int
    num_steps: int
    acceptance_rate: float
    mean_acceptance_length: float
    accepted_per_position: str  # "a;b;c": steps whose proposal was accepted through position 1, 2, 3, ...
    target_seconds: float
    speculative_seconds: float
    target_tokens_per_s: float
    speculative_tokens_per_s: float
    speedup: float  # speculative_tokens_per_s / target_tokens_per_s: a throughput ratio
    ttft_ms: float
    itl_ms: float
    target_ttft_ms: float
    target_itl_ms: float  # one target step, the unit of the cost model below
    # The cost model (Leviathan et al. 2023, section 3.4), measured in this run, steps after the first
    # (the first holds the prompt's prefill): c = one draft token's time / one target step; verification_cost
    # = one verification of k + 1 tokens / one target step (the paper assumes 1).
    draft_token_ms: float
    verification_ms: float
    draft_cost: float
    verification_cost: float
    num_rejected_steps: int  # steps that stopped at a rejected draft token
    alpha: float  # per-token acceptance probability: accepted / (accepted + rejected steps)
    predicted_speedup: float  # the paper's (1 - alpha^(k+1)) / ((1 - alpha)(1 + k c))
    predicted_speedup_steps: float  # (accepted + steps) / (c proposed + verification_cost steps): the counts
    peak_memory_gib: float  # GPU memory allocated at peak over the row's runs; NaN on a CPU
    answer: str | None
    reference: str
    correct: bool
    target_correct: bool
    matches_target: bool
    truncated: bool
    target_truncated: bool
    repeats: int  # timings behind each time of the row


def is_truncated(token_ids: list[int], text: str, *, max_new_tokens: int, eos_token_id: int | None) -> bool:
    """An output cut by max_new_tokens before its answer: that long, no eos in it, no `####` in its text."""
    return (len(token_ids) >= max_new_tokens and (eos_token_id is None or eos_token_id not in token_ids)
            and SEPARATOR not in text)


def write_rows(path: str, rows: list[BenchRow]) -> None:
    """benchmark.csv: a column per `BenchRow` field, written whole or not at all."""
    fields = list(BenchRow.__dataclass_fields__)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)
