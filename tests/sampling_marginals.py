"""Exact marginals of what a model samples, for the sampling tests: a pair whose distributions are peaked and
far apart, so that a sampler following the draft instead of the target fails; WARP, the temperature and top-p
they sample at."""

from __future__ import annotations

import torch

from tests.tiny_models import tiny_qwen2

WARP = dict(temperature=0.8, top_p=0.9)


def peaked_pair():
    """A target and a draft over 12 tokens with peaked, distinct next-token distributions."""
    target, draft = tiny_qwen2(0, vocab_size=12), tiny_qwen2(5, vocab_size=12, hidden_size=16)
    with torch.no_grad():
        target.lm_head.weight.mul_(30)
        draft.lm_head.weight.mul_(30)
    return target, draft


def exact_marginals(model, prompt: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact marginals [12] of the first and second token `model` samples after `prompt` at WARP."""
    from specdraft.decoding.verification import probabilities

    device = next(model.parameters()).device
    ids = torch.tensor([prompt], device=device)
    with torch.no_grad():
        p1 = probabilities(model(ids).logits[0, -1], **WARP)  # [12]
        follow = torch.cat([ids.repeat(12, 1), torch.arange(12, device=device)[:, None]], dim=1)
        p2 = probabilities(model(follow).logits[:, -1], **WARP)  # [12, 12]
    return p1.cpu(), (p1 @ p2).cpu()


def total_variation(p: torch.Tensor, q: torch.Tensor) -> float:
    return 0.5 * float((p - q).abs().sum())
