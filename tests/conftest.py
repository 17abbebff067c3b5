"""Fixtures and hooks only: the helpers tests import live in modules of their own (tests/tiny_models.py,
tests/sampling_marginals.py, tests/quantized_engines.py, tests/linear_kernel_cases.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.tiny_models import tiny_qwen2

REPO = Path(__file__).resolve().parents[1]
_environment = pytest.MonkeyPatch()


def pytest_configure(config):
    # Kernel choices stored on this machine or shipped for its GPU would stand in for the configurations a test
    # forces: the tests read and write no tuning table (tests/test_tuning_table.py points it at its own files).
    _environment.setenv("SPECDRAFT_KERNEL_CACHE", "off")


def pytest_unconfigure(config):
    _environment.undo()


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


@pytest.fixture
def triton_kernels_forced(monkeypatch):
    """On a GPU, every step through the Triton kernels whatever timing would choose: each matmul on the
    tensor-core form with K split in two (the last program's sum of the splits too) where K allows (K of 32
    and more; for int4, of 256 and more: a split holds whole groups of 128), a prefill's rows over several
    row blocks of 16, attention split over several programs (and combined by the last), and proposal graphs
    with dependent launches where this GPU has them."""
    import triton

    from specdraft.engine import runner
    from specdraft.engine import tuner as tuning
    from specdraft.engine.attention import INTERPRETER_ATTENTION
    from specdraft.engine.linear_kernel import Config
    from specdraft.engine.quant import GROUP

    def linear(key):
        K, int4 = key[1], key[4] == torch.uint8
        block_k = max(GROUP if int4 else 16, triton.next_power_of_2(K) // 2)  # two K tiles: two splits
        # Two stages: float32 tiles of four would not fit an H200's shared memory.
        return Config(32, block_k, 2, 4, 2, fuse_norm=key[3] != torch.float16)

    monkeypatch.setattr(runner._Graph, "_replay_ms", lambda self, graph: float(graph is self.graph))
    # Attention: blocks of 16 keys over 4 splits.
    with tuning.use(tuning.KernelTuner(forced={"linear": linear, "attention": INTERPRETER_ATTENTION})) as tuner:
        yield tuner
