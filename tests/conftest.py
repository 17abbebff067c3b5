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
