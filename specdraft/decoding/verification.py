"""Verification of a proposal, greedy or by rejection sampling (Leviathan et al. 2023, Alg. 1): pure tensor code."""

from __future__ import annotations

import torch
from torch import Tensor


def probabilities(logits: Tensor, temperature: float, top_p: float = 1.0) -> Tensor:
    """Softmax at `temperature` in float32, cut to the top-p nucleus (Holtzman et al. 2020): [..., V] -> [..., V]."""
    probs = (logits.float() / temperature).softmax(dim=-1)
    if top_p >= 1.0:
        return probs
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    keep_sorted = (sorted_probs.cumsum(dim=-1) - sorted_probs) < top_p  # the top token is always kept
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    nucleus = probs * keep
    return nucleus / nucleus.sum(dim=-1, keepdim=True)


def sample_inverse_cdf(probs: Tensor, uniforms: Tensor) -> Tensor:
    """One token per row of probs [B, V] from uniforms [B] in [0, 1), with no generator so it runs in a CUDA graph."""
    cdf = probs.cumsum(dim=-1)  # [B, V]
    threshold = uniforms[:, None] * cdf[:, -1:]  # [B, 1]
    return (cdf <= threshold).sum(dim=-1).clamp_max(probs.shape[-1] - 1)  # [B]


def verify_greedy_batch(draft_ids: Tensor, target_logits: Tensor) -> tuple[Tensor, Tensor]:
    """(num_accepted [B], next_token [B]) on the device. draft_ids: [B, k]; target_logits: [B, k+1, V]."""
    target_ids = target_logits.argmax(dim=-1)  # [B, k+1]
    k = draft_ids.shape[1]
    num_accepted = (draft_ids == target_ids[:, :k]).long().cumprod(dim=1).sum(dim=1)  # [B]
    return num_accepted, target_ids.gather(1, num_accepted[:, None])[:, 0]


def rejection_sample_batch(draft_ids: Tensor, draft_probs: Tensor, target_probs: Tensor,
                           generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Rejection sampling per row: draft_ids [B, k] from draft_probs [B, k, V], target_probs [B, k+1, V] -> [B], [B]."""
    B, k = draft_ids.shape
    p = target_probs[:, :k].gather(-1, draft_ids[..., None])[..., 0]  # [B, k]
    q = draft_probs.gather(-1, draft_ids[..., None])[..., 0]  # [B, k]
    u = torch.rand(B, k, generator=generator, device=draft_ids.device)
    rejected = u * q >= p  # u < p/q accepts, written so that q = 0 cannot divide by zero
    num_accepted = (~rejected).long().cumprod(dim=1).sum(dim=1)  # [B]
    # At the first rejection n: norm(max(0, p_n - q_n)); all accepted (n = k): p_k, as if q_k were 0.
    q_padded = torch.cat((draft_probs, draft_probs.new_zeros(B, 1, draft_probs.shape[-1])), dim=1)  # [B, k+1, V]
    index = num_accepted[:, None, None].expand(B, 1, target_probs.shape[-1])
    p_n, q_n = target_probs.gather(1, index)[:, 0], q_padded.gather(1, index)[:, 0]  # [B, V]
    residual = (p_n - q_n).clamp_min(0)
    empty = residual.sum(dim=-1, keepdim=True) <= 0  # p == q exactly: rejection had probability 0
    residual = torch.where(empty, p_n, residual)
    return num_accepted, torch.multinomial(residual, 1, generator=generator)[:, 0]


def verify(draft_ids: Tensor, target_logits: Tensor, draft_probs: Tensor | None, *, temperature: float,
           top_p: float, generator: torch.Generator | None,
           acceptance: SyntheticAcceptance | None) -> tuple[Tensor, Tensor]:
    """(num_accepted [B], next_token [B]): synthetic, greedy at temperature 0, else by rejection sampling."""
    if acceptance is not None:
        return acceptance.verify(draft_ids, target_logits)
    if temperature == 0:
        return verify_greedy_batch(draft_ids, target_logits)
    target_probs = probabilities(target_logits, temperature, top_p)  # [B, k+1, V]
    if draft_probs is None:  # nothing proposed: the next token is the target's own sample
        draft_probs = target_probs.new_zeros(*draft_ids.shape, target_probs.shape[-1])
    return rejection_sample_batch(draft_ids, draft_probs, target_probs, generator)


def check_acceptance(acceptance: SyntheticAcceptance | None, temperature: float) -> None:
    if acceptance is not None and temperature != 0:
        raise ValueError("a synthetic acceptance replaces greedy verification: temperature must be 0")


class SyntheticAcceptance:
    """A benchmark's stand-in for greedy verification: each draft token accepted with probability `rate` (seeded,
    i.i.d. as in Leviathan et al. 2023, 3.1), to time an acceptance no real pair reaches; output is not the target's."""

    def __init__(self, rate: float, seed: int = 0):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"acceptance rate must be in [0, 1], got {rate}")
        self.rate, self.seed = rate, seed
        self._generator: torch.Generator | None = None

    def verify(self, draft_ids: Tensor, target_logits: Tensor) -> tuple[Tensor, Tensor]:
        """As `verify_greedy_batch`: (num_accepted [B], next_token [B])."""
        if self._generator is None:
            self._generator = torch.Generator(device=draft_ids.device).manual_seed(self.seed)
        B, k = draft_ids.shape
        accepted = torch.rand(B, k, generator=self._generator, device=draft_ids.device) < self.rate  # [B, k]
        num_accepted = accepted.long().cumprod(dim=1).sum(dim=1)  # [B]
        return num_accepted, target_logits.argmax(dim=-1).gather(1, num_accepted[:, None])[:, 0]
