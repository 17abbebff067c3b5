"""Tiny models built from config in the tests themselves: no network, no GPU, seconds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# Kernel choices stored on this machine or shipped for its GPU would stand in for the configurations a test
# forces: the tests read and write no tuning table (tests/test_tuning_table.py points it at its own files).
os.environ["SPECDRAFT_KERNEL_CACHE"] = "off"


def tiny_qwen2(seed: int, *, vocab_size: int = 97, hidden_size: int = 32, num_hidden_layers: int = 2):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_hidden_layers,
                         num_attention_heads=4, num_key_value_heads=2, intermediate_size=2 * hidden_size,
                         max_position_embeddings=256)
    return Qwen2ForCausalLM(config).eval()


def hf_greedy(model, prompt, max_new_tokens: int, eos_token_id=None) -> torch.Tensor:
    """Hugging Face's greedy continuation [new tokens] (on the host) of prompt (token ids: a list, [P] or
    [1, P]). The attention mask is given: without one, `generate` takes every token equal to pad_token_id
    for padding and masks it, and the tests' prompts hold token 0 (measured on the H200: a float32 engine
    test then parted from Hugging Face at a logit gap of 6.5e-3, docs/performance.md)."""
    ids = torch.as_tensor(prompt, device=model.device).reshape(1, -1)
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens, do_sample=False,
                         eos_token_id=eos_token_id, pad_token_id=0, top_p=None, top_k=None, temperature=None)
    return out[0, ids.shape[1]:].cpu()


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
    tensor-core form with K split in two (its second kernel too) where K allows (K of 32 and more; for
    int4, of 256 and more: a split holds whole groups of 128), attention split over several programs (the
    combine kernel too), and proposal graphs with dependent launches where this GPU has them."""
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


def assert_engine_is_its_dequantized_model(model, reference, weights: str):
    """The engine of `weights` (int8, int4) built from `model` computes what `reference` (model over the
    dequantized weights) computes: bit for bit against a float engine built from `reference`, within 1e-4
    of the Hugging Face model over it (and not of `model` itself: quantizing changed it), and greedy
    output equal to Hugging Face's. Returns the quantized engine."""
    from specdraft.decoding.speculative import autoregressive_generate
    from specdraft.engine import Engine

    quantized = Engine.from_hf(model, max_seq_len=128, weights=weights)
    over_dequantized = Engine.from_hf(reference, max_seq_len=128)  # bf16 format: plain float32 matrices
    prompt = torch.randint(0, model.config.vocab_size, (1, 9), generator=torch.Generator().manual_seed(1))
    logits = []
    for engine in (quantized, over_dequantized):
        session = engine.open_session(64)
        logits.append(torch.cat([session.forward(prompt[0, :6].tolist(), 6),
                                 session.forward(prompt[0, 6:7].tolist(), 1),
                                 session.forward(prompt[0, 7:].tolist(), 2)]))
    assert torch.equal(logits[0], logits[1])  # the same function, bit for bit
    with torch.no_grad():
        hf = reference(prompt).logits[0]
    torch.testing.assert_close(logits[0], hf, atol=1e-4, rtol=0)
    with torch.no_grad():
        assert not torch.allclose(logits[0], model(prompt).logits[0], atol=1e-4)
    out = autoregressive_generate(quantized, prompt, max_new_tokens=30)
    assert out.tolist() == hf_greedy(reference, prompt, 30).tolist()
    return quantized


def assert_speculative_equals_quantized_target_greedy(target, draft, weights: str):
    """Speculative decoding over a `weights` (int8, int4) target reproduces that quantized target's own
    greedy output, with a draft of the same format and with a float one, k = 1 and 4, three prompts."""
    from specdraft.decoding.speculative import autoregressive_generate, speculative_generate
    from specdraft.engine import Engine

    quantized_target = Engine.from_hf(target, max_seq_len=128, weights=weights)
    drafts = (Engine.from_hf(draft, max_seq_len=128, weights=weights), Engine.from_hf(draft, max_seq_len=128))
    for draft_engine in drafts:
        for seed in range(3):
            prompt = torch.randint(0, 97, (1, 5 + seed), generator=torch.Generator().manual_seed(seed))
            reference = autoregressive_generate(quantized_target, prompt, max_new_tokens=40)
            for k in (1, 4):
                out = speculative_generate(quantized_target, draft_engine, prompt, num_speculative_tokens=k,
                                           max_new_tokens=40)
                assert torch.equal(out.token_ids, reference)


def forced_candidate(config: int, norm_inside: bool, fusion: str, rows: int, dtype: torch.dtype, int4: bool = False):
    """`linear_kernel.CANDIDATES[config]` with the norm inside or before it, or a skip where that case does not
    exist (no norm to place, a one-row form for several rows) or adds nothing (bf16 under the interpreter)."""
    pytest.importorskip("triton")
    from specdraft.engine import linear_kernel

    assert len(linear_kernel.CANDIDATES) == 8, "one test case per candidate: update the parametrisation"
    if not norm_inside and "norm" not in fusion:
        pytest.skip("no norm to place")
    candidate = linear_kernel.CANDIDATES[config]._replace(fuse_norm=norm_inside)
    if candidate not in linear_kernel.candidates_for(rows, norm="norm" in fusion, int4=int4):
        pytest.skip(f"{candidate} takes one row")
    if not torch.cuda.is_available() and dtype == torch.bfloat16:
        pytest.skip("the interpreter's bf16 dot is numpy's float32 one: nothing more than the float32 case")
    return candidate


def assert_fused_linear_equals_reference(candidate, fusion: str, rows: int, weight: torch.Tensor,
                                         scale: torch.Tensor | None, x: torch.Tensor, g: torch.Generator,
                                         dtype: torch.dtype, monkeypatch) -> None:
    """`linear_kernel.fused_linear` forced to `candidate` (on a GPU, or under the Triton interpreter) against
    `quant.linear`'s reference in float64: weight floating, int8 (scale per row) or packed int4 (uint8, scale
    per group), x [rows, K]; `fusion` names what is folded in (bias, residual, norm, glu), drawn from g."""
    import triton

    from specdraft.engine import tuner as tuning
    from specdraft.engine.linear_kernel import fused_linear
    from specdraft.engine.quant import linear

    device = "cuda" if torch.cuda.is_available() else "cpu"
    n = len(weight) // 2 if "glu" in fusion else len(weight)
    k = x.shape[1]
    kwargs = dict(bias=torch.randn(len(weight), generator=g) if "bias" in fusion else None,
                  residual=torch.randn(rows, n, generator=g) if "residual" in fusion else None,
                  norm_weight=torch.rand(k, generator=g) + 0.5 if "norm" in fusion else None,
                  glu="glu" in fusion)
    on = {key: v.to(device, dtype) if isinstance(v, torch.Tensor) else v for key, v in kwargs.items()}
    integer = not weight.dtype.is_floating_point
    tuner = tuning.KernelTuner(forced={"linear": candidate})
    try:
        with tuning.use(tuner):
            out = fused_linear(x.to(device, dtype), weight.to(device, weight.dtype if integer else dtype),
                               None if scale is None else scale.to(device, dtype), eps=1e-6, **on)
    except triton.runtime.errors.OutOfResources as e:  # the tuner skips such a candidate too
        pytest.skip(f"{candidate} does not fit this GPU for {dtype} {weight.dtype} weights: {e}")
    assert out is not None, tuner.failures
    as64 = {key: v.double() if isinstance(v, torch.Tensor) else v for key, v in kwargs.items()}
    expected = linear(x.double(), weight if integer else weight.double(), None if scale is None else scale.double(),
                      eps=1e-6, **as64)  # integer weights stay as stored: the reference dequantizes them
    assert out.shape == expected.shape
    error = (out.cpu().double() - expected).norm() / expected.norm()
    assert float(error) < (1e-5 if dtype == torch.float32 else 2e-2), error
