"""Tiny models built from config in the tests themselves: no network, no GPU, seconds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def tiny_qwen2(seed: int, *, vocab_size: int = 97, hidden_size: int = 32, num_hidden_layers: int = 2):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_hidden_layers,
                         num_attention_heads=4, num_key_value_heads=2, intermediate_size=2 * hidden_size,
                         max_position_embeddings=256)
    return Qwen2ForCausalLM(config).eval()


# Sampling tests: a pair whose distributions are peaked and far apart, so that a sampler following the
# draft instead of the target fails; WARP, the temperature and top-p they sample at.
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
    from specdraft.verification import probabilities

    device = next(model.parameters()).device
    ids = torch.tensor([prompt], device=device)
    with torch.no_grad():
        p1 = probabilities(model(ids).logits[0, -1], **WARP)  # [12]
        follow = torch.cat([ids.repeat(12, 1), torch.arange(12, device=device)[:, None]], dim=1)
        p2 = probabilities(model(follow).logits[:, -1], **WARP)  # [12, 12]
    return p1.cpu(), (p1 @ p2).cpu()


def total_variation(p: torch.Tensor, q: torch.Tensor) -> float:
    return 0.5 * float((p - q).abs().sum())


@pytest.fixture(scope="session")
def target():
    return tiny_qwen2(0)


@pytest.fixture(scope="session")
def draft():
    # A different, smaller model: it disagrees with the target often, so rollback paths are exercised.
    return tiny_qwen2(1, hidden_size=16, num_hidden_layers=1)


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO
