"""Weight-only int4 engine (`weights='int4'`) on CPU, float32: it computes exactly what a model over the
dequantized weights computes, and speculative decoding reproduces the quantized target's greedy output.
Every matrix's input size must be a multiple of the group (128), so the models here are built for that."""

import os

import pytest
import torch

from specdraft.engine import Engine
from specdraft.engine.quant import GROUP, dequantize_int4, dequantized_copy, quantize_int4, unpack_int4
from tests.linear_kernel_cases import (CANDIDATE_INDEXES, NORM_PLACEMENTS, WIDE_CANDIDATE_INDEXES, WIDE_ROWS,
                                       assert_fused_linear_equals_reference, forced_candidate)
from tests.quantized_engines import (assert_engine_is_its_dequantized_model,
                                     assert_speculative_equals_quantized_target_greedy)
from tests.tiny_models import tiny_qwen2


def int4_qwen2(seed: int, hidden_size: int = 128, num_hidden_layers: int = 2):
    """A tiny Qwen2 whose matrices all take a multiple of 128 inputs (hidden 128, 4 heads of 32, MLP 256)."""
    return tiny_qwen2(seed, vocab_size=97, hidden_size=hidden_size, num_hidden_layers=num_hidden_layers)


def int4_qwen3(seed: int):
    """A tiny Qwen3 (per-head q/k norm, head_dim 64 unlike hidden / heads = 32) with 128-multiple inputs."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(Qwen3Config(
        vocab_size=61, hidden_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        head_dim=64, intermediate_size=384, max_position_embeddings=256)).eval()
    with torch.no_grad():  # the norms start at 1: make them matter
        for layer in model.model.layers:
            layer.self_attn.q_norm.weight.uniform_(0.5, 1.5)
            layer.self_attn.k_norm.weight.uniform_(0.5, 1.5)
    return model


def test_quantize_int4_rounds_each_value_to_its_groups_nearest_grid_point():
    g = torch.Generator().manual_seed(0)
    # Groups of very different ranges along K and along N.
    w = torch.randn(12, 4 * GROUP, generator=g) * torch.logspace(-3, 1, 4).repeat_interleave(GROUP)
    w = w * torch.logspace(-1, 1, 12)[:, None]
    w[3, GROUP : 2 * GROUP] = 0  # an all-zero group stays zero
    packed, scale = quantize_int4(w, torch.float32)
    assert packed.dtype == torch.uint8 and packed.shape == (12, 2 * GROUP) and scale.shape == (12, 4)
    q = unpack_int4(packed)  # [12, 4 * GROUP]
    assert int(q.min()) == -7 and int(q.max()) == 7
    assert bool((q[3, GROUP : 2 * GROUP] == 0).all())
    # Every group's largest magnitude lands on +-7 exactly: the grid spans the group, no more, no less.
    assert bool((q.view(12, 4, GROUP).abs().amax(-1)[scale > 1e-8] == 7).all())
    largest = w.view(12, 4, GROUP).abs().amax(-1)  # [12, 4]
    torch.testing.assert_close((7 * scale)[largest > 0], largest[largest > 0])
    # Each value is the nearest grid point of its own group's scale.
    group_scale = scale.repeat_interleave(GROUP, dim=1)  # [12, 4 * GROUP]
    error = (dequantize_int4(packed, scale, torch.float32) - w).abs()
    assert bool((error <= group_scale / 2 + 1e-6 * w.abs()).all())
    # The scale of another group would not do: the groups really are separate.
    assert float(scale[:, 0].max()) < float(scale[:, 3].min())


def test_int4_packing_round_trips_and_follows_the_nibble_order():
    q = torch.randint(-7, 8, (5, 2 * GROUP), generator=torch.Generator().manual_seed(1))
    q[:, 0], q[:, GROUP] = 7, -7  # each group's largest |q| is 7: its scale is 1, and quantizing q returns q
    packed, scale = quantize_int4(q.float(), torch.float32)
    assert torch.equal(scale, torch.ones(5, 2))
    assert torch.equal(unpack_int4(packed), q.to(torch.int8))
    # Byte j holds q + 8 of column 2j in its low nibble and of column 2j + 1 in its high one.
    assert torch.equal(packed, ((q[:, 0::2] + 8) | ((q[:, 1::2] + 8) << 4)).to(torch.uint8))


def test_int4_rejects_inputs_not_a_multiple_of_the_group(target):
    with pytest.raises(ValueError, match="multiple of 128"):
        quantize_int4(torch.randn(4, 96), torch.float32)
    # The conftest target has hidden size 32: the engine names the matrix and the way out.
    with pytest.raises(ValueError, match=r"the qkv matrix \[\d+, 32\].*engine_weights: int8"):
        Engine.from_hf(target, max_seq_len=64, weights="int4")


@pytest.mark.parametrize("make", [lambda: int4_qwen2(0), lambda: int4_qwen3(0)], ids=["qwen2", "qwen3"])
def test_int4_engine_equals_the_dequantized_model(make):
    model = make()
    int4 = assert_engine_is_its_dequantized_model(model, dequantized_copy(model, "int4"), "int4")
    assert int4.decoder.layers[0].qkv.weight.dtype == torch.uint8
    assert int4.decoder.lm_head.weight.dtype == torch.uint8


def test_int4_speculative_equals_int4_target_greedy():
    assert_speculative_equals_quantized_target_greedy(int4_qwen2(0), int4_qwen2(1, num_hidden_layers=1), "int4")


def test_int4_takes_a_quarter_of_the_matrix_bytes():
    model = int4_qwen2(0)

    def matrix_bytes(engine):
        return sum(p.numel() * p.element_size() for n, p in engine.decoder.named_parameters()
                   if n.endswith("weight") and p.dim() == 2 and not n.startswith("embed"))

    def scale_bytes(engine):
        return sum(b.numel() * b.element_size() for n, b in engine.decoder.named_buffers() if n.endswith("_scale"))

    bf16 = Engine.from_hf(model, max_seq_len=64, dtype=torch.bfloat16)
    int4 = Engine.from_hf(model, max_seq_len=64, dtype=torch.bfloat16, weights="int4")
    assert matrix_bytes(int4) * 4 == matrix_bytes(bf16)
    assert scale_bytes(int4) * GROUP == matrix_bytes(bf16)  # one bf16 scale per 128 weights


def test_engine_weights_config_accepts_int4():
    from specdraft.plumbing.config import ConfigError, load_config, validate
    from specdraft.models.engine_choice import serve

    assert load_config(validate({"engine_weights": "int4"})).engine_weights == "int4"
    with pytest.raises(ConfigError, match=r"engine_weights.*allowed values: \['model_dtype', 'int8', 'int4'\]"):
        validate({"engine_weights": "int2"})
    with pytest.raises(ValueError, match=r"\['model_dtype', 'int8', 'int4'\]"):
        Engine.from_hf(int4_qwen2(0), max_seq_len=64, weights="int2")
    served = serve(int4_qwen2(0), "native", max_seq_len=64, weights="int4")
    assert served.decoder.lm_head.weight.dtype == torch.uint8


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available(),
                    reason="the Triton kernel needs a CUDA device or TRITON_INTERPRET=1 with triton installed")
@pytest.mark.parametrize("rows", [1, 6, 16])
@pytest.mark.parametrize("fusion", ["plain", "bias", "residual", "residual+bias", "norm", "norm+bias", "norm+residual",
                                    "norm+glu", "glu", "glu+bias"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("config", CANDIDATE_INDEXES)
@pytest.mark.parametrize("placement", NORM_PLACEMENTS)
def test_fused_linear_int4_kernel_equals_the_reference(rows, fusion, dtype, config, placement, monkeypatch):
    """Each candidate configuration of the Triton kernel with packed int4 weights (tensor cores or GEMV,
    split-K or not, the norm inside, before it or in a prepass) against the reference path in float64, every
    fusion, on masked edges: N a multiple of no block, K = 3 groups (a multiple of no BLOCK_K above 128)."""
    candidate = forced_candidate(config, placement, fusion, rows, dtype, int4=True)
    g = torch.Generator().manual_seed(rows)
    n, k = 203, 3 * GROUP
    w = torch.randn(2 * n if "glu" in fusion else n, k, generator=g)
    w = w * torch.logspace(-1, 1, 3).repeat_interleave(GROUP)  # groups of different scales along K
    packed, scale = quantize_int4(w, torch.float32)
    x = torch.randn(rows, k, generator=g)
    assert_fused_linear_equals_reference(candidate, fusion, rows, packed, scale, x, g, dtype, monkeypatch)


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available(),
                    reason="the Triton kernel needs a CUDA device or TRITON_INTERPRET=1 with triton installed")
@pytest.mark.parametrize("rows", WIDE_ROWS)
@pytest.mark.parametrize("fusion", ["plain", "residual+bias", "norm+bias", "norm+glu"])
@pytest.mark.parametrize("config", WIDE_CANDIDATE_INDEXES)
@pytest.mark.parametrize("placement", NORM_PLACEMENTS)
def test_fused_linear_int4_kernel_over_many_rows_equals_the_reference(rows, fusion, config, placement, monkeypatch):
    """Each tile for more rows than one tensor-core tile that holds whole groups, on packed int4 weights, against
    the reference path in float64 (float32 activations): several row blocks, the last part-filled."""
    candidate = forced_candidate(config, placement, fusion, rows, torch.float32, int4=True, wide=True)
    g = torch.Generator().manual_seed(rows)
    n, k = 203, 3 * GROUP
    w = torch.randn(2 * n if "glu" in fusion else n, k, generator=g) * torch.logspace(-1, 1, 3).repeat_interleave(GROUP)
    packed, scale = quantize_int4(w, torch.float32)
    x = torch.randn(rows, k, generator=g)
    assert_fused_linear_equals_reference(candidate, fusion, rows, packed, scale, x, g, torch.float32, monkeypatch)


def test_int4_candidates_hold_whole_groups():
    from specdraft.engine import linear_kernel

    half_group = linear_kernel.Config(32, GROUP // 2, 1, 4, 4)
    candidates = (*linear_kernel.CANDIDATES, half_group)
    for rows in (1, 6):
        assert half_group in linear_kernel.candidates_for(rows, candidates=candidates)  # floating, int8 weights
        configs = linear_kernel.candidates_for(rows, norm=True, int4=True, candidates=candidates)
        assert configs and all(c.block_k % GROUP == 0 for c in configs)


def test_fused_linear_rejects_malformed_int4_weights():
    """Checked before any kernel runs (no Triton needed): scales of the wrong shape, K not whole groups."""
    from specdraft.engine.linear_kernel import fused_linear

    packed, scale = quantize_int4(torch.randn(8, 2 * GROUP), torch.float32)
    x = torch.randn(1, 2 * GROUP)
    with pytest.raises(ValueError, match=r"scales \[8, 2\], got \(8, 1\)"):
        fused_linear(x, packed, scale[:, :1])
    with pytest.raises(ValueError, match="got None"):
        fused_linear(x, packed, None)
    with pytest.raises(ValueError, match=f"multiple of {GROUP}"):
        fused_linear(torch.randn(1, GROUP + 64), packed[:, : (GROUP + 64) // 2], scale[:, :1])
