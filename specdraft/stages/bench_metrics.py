"""What a batch-1 bench row derives from a run's readings: latencies, step costs and per-token acceptance."""

from __future__ import annotations

import math
from dataclasses import dataclass

from specdraft.decoding.speculative import Timeline


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN where the denominator is 0 or NaN (a quantity this run could not measure)."""
    return numerator / denominator if denominator and not math.isnan(denominator) else math.nan


def latencies_ms(start: float, token_times: list[float]) -> tuple[float, float]:
    """(TTFT, mean ITL) in ms from the call's start and each new token's arrival; NaN where undefined."""
    if not token_times:
        return math.nan, math.nan
    ttft = (token_times[0] - start) * 1e3
    if len(token_times) < 2:
        return ttft, math.nan
    return ttft, (token_times[-1] - token_times[0]) * 1e3 / (len(token_times) - 1)


@dataclass(frozen=True)
class StepCosts:
    draft_token_ms: float
    verification_ms: float
    num_rejected_steps: int
    alpha: float


def step_costs(timeline: Timeline, k: int) -> StepCosts:
    """Mean draft-token and full-verification times over the steps after the first (which holds the prefill), and
    alpha, the maximum-likelihood per-token acceptance when each step stops at its first rejection."""
    later = range(1, len(timeline.num_proposed))
    proposed = sum(timeline.num_proposed[i] for i in later)
    draft_ms = sum(timeline.proposal_seconds[i] for i in later) * 1e3 / proposed if proposed else math.nan
    full = [timeline.verification_seconds[i] for i in later if timeline.num_proposed[i] == k]
    verification_ms = sum(full) * 1e3 / len(full) if full else math.nan
    accepted = sum(timeline.num_accepted)
    rejections = sum(a < p for p, a in zip(timeline.num_proposed, timeline.num_accepted))
    alpha = accepted / (accepted + rejections) if accepted + rejections else math.nan
    return StepCosts(draft_ms, verification_ms, rejections, alpha)
