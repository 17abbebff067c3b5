"""What speculative decoding should buy, from acceptance and measured costs (Leviathan et al. 2023, section 3)."""

from __future__ import annotations


def leviathan_speedup(alpha: float, k: int, c: float, verification_cost: float = 1.0) -> float:
    """Expected speedup with k draft tokens: E[tokens per step] / (k c + verification cost), where
    E[tokens per step] = (1 - alpha^(k+1)) / (1 - alpha) (eq. 1 and theorem 3.8; the paper takes the
    verification cost as 1 target step). alpha: per-token acceptance probability; c: one draft token's time
    over one target step."""
    tokens = k + 1 if alpha >= 1 else (1 - alpha ** (k + 1)) / (1 - alpha)
    return tokens / (k * c + verification_cost)
