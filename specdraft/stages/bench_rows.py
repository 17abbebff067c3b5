"""benchmark.csv: one row per problem and k (`BenchRow`), the rule that marks an output cut off, and the writer."""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass

from specdraft.data.answers import SEPARATOR
from specdraft.plumbing.atomic import atomic_path


@dataclass(frozen=True)
class BenchRow:
    """One problem decoded with k draft tokens beside the target alone (`target_*`); the columns are README's.
    Times are medians over `repeats` of the same run; counts (vLLM's, `SpecStats`) and outputs are the first's."""

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
    # The cost model (Leviathan et al. 2023, 3.4) measured: c and verification_cost in units of one target step.
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
