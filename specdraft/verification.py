"""Verification of a proposal against the target: pure tensor functions, no models.

Greedy: accept the longest prefix of the proposal that equals the target's argmax, then emit the target's
own token at the first disagreement (recovered) or after the last proposal (bonus).
Sampled: Leviathan et al. 2023, Alg. 1 / Chen et al. 2023: accept draft token x with probability
min(1, p(x) / q(x)); at the first rejection sample from norm(max(0, p - q)); if all are accepted sample the
bonus token from the target's next distribution. The output then follows the target's distribution exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor


def verify_greedy(draft_ids: Tensor, target_logits: Tensor) -> tuple[int, Tensor]:
    """Return (num_accepted, next_token). draft_ids: [k]; target_logits: [k+1, V]."""
    target_ids = target_logits.argmax(dim=-1)  # [k+1]
    k = draft_ids.shape[0]
    mismatch = (draft_ids != target_ids[:k]).nonzero()
    num_accepted = int(mismatch[0, 0]) if mismatch.numel() else k
    return num_accepted, target_ids[num_accepted]


def rejection_sample(draft_ids: Tensor, draft_probs: Tensor, target_probs: Tensor,
                     generator: torch.Generator | None = None) -> tuple[int, Tensor]:
    """Return (num_accepted, next_token).

    draft_ids: [k] tokens sampled from draft_probs; draft_probs: [k, V] the draft's distributions;
    target_probs: [k+1, V] the target's distributions at the same positions plus one.
    """
    k = draft_ids.shape[0]
    positions = torch.arange(k, device=draft_ids.device)
    p = target_probs[positions, draft_ids]  # [k]
    q = draft_probs[positions, draft_ids]  # [k]
    u = torch.rand(k, generator=generator, device=draft_ids.device)
    # Accept when u < p/q, written as u * q < p so that q = 0 (never proposed) cannot divide by zero.
    rejected = (u * q >= p).nonzero()
    if not rejected.numel():
        return k, torch.multinomial(target_probs[k], 1, generator=generator)[0]
    n = int(rejected[0, 0])
    residual = (target_probs[n] - draft_probs[n]).clamp_min(0)  # [V]
    if residual.sum() <= 0:  # p == q exactly: rejection had probability 0; fall back to p
        residual = target_probs[n]
    return n, torch.multinomial(residual / residual.sum(), 1, generator=generator)[0]


def probabilities(logits: Tensor, temperature: float, top_p: float = 1.0) -> Tensor:
    """Softmax at `temperature` in float32, restricted to the top-p nucleus (Holtzman et al. 2020) when
    top_p < 1: the fewest most likely tokens whose mass reaches top_p, renormalised. [..., V] -> [..., V]."""
    probs = (logits.float() / temperature).softmax(dim=-1)
    if top_p >= 1.0:
        return probs
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    # Keep a token if the mass before it is still short of top_p (the most likely token is always kept).
    keep_sorted = (sorted_probs.cumsum(dim=-1) - sorted_probs) < top_p
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    nucleus = probs * keep
    return nucleus / nucleus.sum(dim=-1, keepdim=True)
