"""What speculative decoding should buy, from acceptance and measured costs (Leviathan et al. 2023, section 3)."""

from __future__ import annotations


def leviathan_speedup(alpha: float, k: int, c: float, verification_cost: float = 1.0) -> float:
    """Expected speedup: (1 - alpha^(k+1)) / (1 - alpha) tokens per step over k c + verification_cost (eq. 1).
    alpha: per-token acceptance probability; c, verification_cost: in units of one target step."""
    tokens = k + 1 if alpha >= 1 else (1 - alpha ** (k + 1)) / (1 - alpha)
    return tokens / (k * c + verification_cost)
