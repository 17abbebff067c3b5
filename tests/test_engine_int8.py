"""Weight-only int8 engine (`weights='int8'`) on CPU, float32: it computes exactly what a model over the
dequantized weights computes, and speculative decoding reproduces the quantized target's greedy output."""

import os

import pytest
import torch

from specdraft.engine import Engine, linear_kernel
from specdraft.engine.quant import GROUP, dequantize, dequantized_copy, quantize_int4, quantize_int8
from tests.linear_kernel_cases import (CANDIDATE_INDEXES, NORM_PLACEMENTS, WIDE_CANDIDATE_INDEXES, WIDE_ROWS,
                                       assert_fused_linear_equals_reference, forced_candidate)
from tests.quantized_engines import (assert_engine_is_its_dequantized_model,
                                     assert_speculative_equals_quantized_target_greedy)
from tests.test_engine import tiny_qwen3
from tests.tiny_models import tiny_qwen2


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available(),
                    reason="the Triton kernel needs a CUDA device or TRITON_INTERPRET=1 with triton")
def test_int8_to_float32_by_integer_ops_is_exact_for_every_int8():
    """The GEMV's FAST_INT8 conversion gives each of the 256 int8 values (-128, which quantize_int8 never
    writes, too) as the conversion instruction does."""
    pytest.importorskip("triton")
    from tests.int8_conversion_kernel import convert

    device = "cuda" if torch.cuda.is_available() else "cpu"
    w = torch.arange(-128, 128, dtype=torch.int16).to(torch.int8).to(device)
    for fast in (True, False):
        out = torch.empty(256, dtype=torch.float32, device=device)
        convert[(1,)](w, out, FAST=fast)
        assert torch.equal(out.cpu(), torch.arange(-128, 128, dtype=torch.float32)), fast


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no GPU"))])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_dequantizing_rounds_once_as_casting_first_would(dtype, device):
    """`dequantize` and `dequantize_int4` multiply the integers by the scales in one kernel; the result is
    what casting q to the dtype (exact: |q| <= 127) and then multiplying gives, bit for bit."""
    from specdraft.engine.quant import GROUP, dequantize_int4, quantize_int4, unpack_int4

    g = torch.Generator().manual_seed(0)
    w = torch.randn(64, 2 * GROUP, generator=g) * torch.logspace(-6, 2, 64)[:, None]
    q, scale = (t.to(device) for t in quantize_int8(w, dtype))
    assert torch.equal(dequantize(q, scale, dtype), q.to(dtype) * scale.to(dtype)[:, None])
    packed, scale4 = (t.to(device) for t in quantize_int4(w, dtype))
    expected = (unpack_int4(packed).to(dtype).view(64, 2, GROUP) * scale4.to(dtype)[:, :, None]).view(64, -1)
    assert torch.equal(dequantize_int4(packed, scale4, dtype), expected)


def test_quantize_int8_rounds_each_row_to_its_nearest_grid_point():
    w = torch.randn(40, 24) * torch.logspace(-3, 1, 40)[:, None]  # rows of very different ranges
    w[3] = 0  # an all-zero row stays zero
    q, scale = quantize_int8(w, torch.float32)
    assert q.dtype == torch.int8 and scale.shape == (40,)
    assert int(q.abs().max()) == 127 and bool((q[3] == 0).all())
    error = (dequantize(q, scale, torch.float32) - w).abs()
    assert bool((error <= scale[:, None] / 2 + 1e-6 * w.abs()).all())


@pytest.mark.parametrize("make", [lambda: tiny_qwen2(0), lambda: tiny_qwen3(0)], ids=["qwen2", "qwen3"])
def test_int8_engine_equals_the_dequantized_model(make):
    model = make()
    int8 = assert_engine_is_its_dequantized_model(model, dequantized_copy(model, "int8"), "int8")
    assert int8.decoder.layers[0].qkv.weight.dtype == torch.int8


@pytest.mark.slow
def test_int8_speculative_equals_int8_target_greedy(target, draft):
    assert_speculative_equals_quantized_target_greedy(target, draft, "int8")


def test_int8_halves_the_matrix_bytes(target):
    def matrix_bytes(engine):
        return sum(p.numel() * p.element_size() for n, p in engine.decoder.named_parameters()
                   if n.endswith("weight") and p.dim() == 2 and not n.startswith("embed"))

    bf16 = Engine.from_hf(target, max_seq_len=64, dtype=torch.bfloat16)
    int8 = Engine.from_hf(target, max_seq_len=64, dtype=torch.bfloat16, weights="int8")
    assert matrix_bytes(int8) * 2 == matrix_bytes(bf16)


def test_unknown_weight_format_is_rejected(target):
    with pytest.raises(ValueError, match="int8"):
        Engine.from_hf(target, max_seq_len=64, weights="int3")


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available(),
                    reason="the Triton kernel needs a CUDA device or TRITON_INTERPRET=1 with triton installed")
@pytest.mark.parametrize("rows", [1, 6, 16])
@pytest.mark.parametrize("fusion", ["plain", "bias", "residual", "residual+bias", "norm", "norm+bias", "norm+residual",
                                    "norm+glu", "glu", "glu+bias"])
@pytest.mark.parametrize("weights", ["int8", "float"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("config", CANDIDATE_INDEXES)
@pytest.mark.parametrize("placement", NORM_PLACEMENTS)
def test_fused_linear_kernel_equals_the_reference(rows, fusion, weights, dtype, config, placement, monkeypatch):
    """Each candidate configuration of the Triton kernel (tensor cores or GEMV, split-K or not, the norm inside,
    before it or in a prepass) against the reference path in float64, on masked edges (N, K multiples of no
    block), every fusion, int8 and floating weights."""
    candidate = forced_candidate(config, placement, fusion, rows, dtype)
    g = torch.Generator().manual_seed(rows)
    n, k = 203, 300  # no block size divides either
    w = torch.randn(2 * n if "glu" in fusion else n, k, generator=g)
    q, scale = quantize_int8(w, torch.float32) if weights == "int8" else (w, None)
    x = torch.randn(rows, k, generator=g)
    assert_fused_linear_equals_reference(candidate, fusion, rows, q, scale, x, g, dtype, monkeypatch)


def test_the_tuner_is_offered_every_gemv_tile_with_its_loads_early():
    """One row: each GEMV tile also with its epilogue read early and (but for int4) its rounds loaded ahead,
    in every norm placement; tensor-core tiles and more rows never."""
    gemv = [c for c in linear_kernel.CANDIDATES if not c.dot]
    for norm, int4 in [(False, False), (True, False), (True, True)]:
        offered = linear_kernel.candidates_for(1, norm=norm, int4=int4)
        early = [c for c in offered if c.early_epilogue]
        assert all(not c.dot and c.loads_ahead == (not int4) for c in early)
        tiles = [c for c in gemv if not (int4 and c.block_k % GROUP)]
        assert len(early) == len(tiles) * (2 if norm else 1)
    assert not any(c.early_epilogue or c.loads_ahead for c in linear_kernel.candidates_for(6, norm=True))


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available(),
                    reason="the Triton kernel needs a CUDA device or TRITON_INTERPRET=1 with triton installed")
@pytest.mark.parametrize("fusion", ["plain", "bias", "residual+bias", "norm+bias", "norm+residual", "norm+glu",
                                    "glu+bias"])
@pytest.mark.parametrize("weights", ["int8", "float", "int4"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("config", [i for i, c in enumerate(linear_kernel.CANDIDATES) if not c.dot])
@pytest.mark.parametrize("placement", ["norm-inside", "norm-before"])
def test_gemv_issuing_its_loads_early_equals_the_reference(fusion, weights, dtype, config, placement, monkeypatch):
    """Each one-row GEMV tile with scale, bias and residual read before its loop (`early_epilogue`) and, but
    for int4, each round's tiles a round ahead (`loads_ahead`), against the reference path in float64, on
    masked edges, every fusion: K of 4,396, three rounds or more for every tile, the last part-filled; int4 on
    K of three groups."""
    int4 = weights == "int4"
    early = linear_kernel.CANDIDATES[config]._replace(**NORM_PLACEMENTS[placement], early_epilogue=True,
                                                      loads_ahead=not int4)
    assert early in linear_kernel.candidates_for(1, norm=True, int4=int4)  # the tuner offers it
    candidate = forced_candidate(config, placement, fusion, 1, dtype, int4=int4, early_epilogue=True,
                                 loads_ahead=not int4)
    g = torch.Generator().manual_seed(5)
    n, k = 203, 3 * GROUP if int4 else 2 * 2048 + 300
    w = torch.randn(2 * n if "glu" in fusion else n, k, generator=g)
    q, scale = (quantize_int4(w, torch.float32) if int4 else quantize_int8(w, torch.float32) if weights == "int8"
                else (w, None))
    assert_fused_linear_equals_reference(candidate, fusion, 1, q, scale, torch.randn(1, k, generator=g), g, dtype,
                                         monkeypatch)


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available(),
                    reason="the Triton kernel needs a CUDA device or TRITON_INTERPRET=1 with triton installed")
@pytest.mark.parametrize("rows", WIDE_ROWS)
@pytest.mark.parametrize("fusion", ["plain", "bias", "residual+bias", "norm+bias", "norm+residual", "norm+glu",
                                    "glu+bias"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("config", WIDE_CANDIDATE_INDEXES)
@pytest.mark.parametrize("placement", NORM_PLACEMENTS)
def test_fused_linear_kernel_over_many_rows_equals_the_reference(rows, fusion, dtype, config, placement,
                                                                 monkeypatch):
    """Each tile for more rows than one tensor-core tile (int8 weights only) against the reference path in
    float64: several row blocks, the last part-filled, on masked edges, every fusion."""
    candidate = forced_candidate(config, placement, fusion, rows, dtype, wide=True)
    g = torch.Generator().manual_seed(rows)
    n, k = 203, 300
    q, scale = quantize_int8(torch.randn(2 * n if "glu" in fusion else n, k, generator=g), torch.float32)
    x = torch.randn(rows, k, generator=g)
    assert_fused_linear_equals_reference(candidate, fusion, rows, q, scale, x, g, dtype, monkeypatch)


def test_fused_linear_takes_many_rows_only_of_quantized_weights():
    """Checked before any kernel runs: floating weights up to one tile of rows, quantized up to MAX_FUSED_ROWS."""
    from specdraft.engine.linear_kernel import MAX_FAST_ROWS, MAX_FUSED_ROWS, fused_linear

    w = torch.randn(8, 32)
    with pytest.raises(ValueError, match=rf"at most {MAX_FAST_ROWS} rows \(floating weights\), got 17"):
        fused_linear(torch.randn(MAX_FAST_ROWS + 1, 32), w)
    q, scale = quantize_int8(w, torch.float32)
    with pytest.raises(ValueError, match=rf"at most {MAX_FUSED_ROWS} rows \(quantized weights\)"):
        fused_linear(torch.randn(MAX_FUSED_ROWS + 1, 32), q, scale)


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available(),
                    reason="the Triton kernel needs a CUDA device or TRITON_INTERPRET=1 with triton installed")
@pytest.mark.parametrize("qk_norm", [False, True], ids=["qwen2", "qwen3"])
@pytest.mark.parametrize("ragged", [False, True], ids=["one-start", "ragged"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rope_and_cache_kernel_equals_the_reference(qk_norm, ragged, dtype):
    pytest.importorskip("triton")
    from specdraft.engine.rope import rope_and_cache, rope_and_cache_reference

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and dtype == torch.bfloat16:
        pytest.skip("the interpreter has no bf16 arithmetic (numpy)")
    g = torch.Generator().manual_seed(0)
    B, T, nh, nkv, hd, S = 3, 5, 6, 2, 16, 32
    qkv = torch.randn(B, T, nh + 2 * nkv, hd, generator=g)
    angles = torch.rand(B, T, hd // 2, generator=g) * 6
    cos = torch.cat((angles, angles), -1).cos()
    sin_signed = torch.cat((-angles, angles), -1).sin()
    columns = (torch.tensor([[3], [9], [0]]) if ragged else torch.tensor([[7]])) + torch.arange(T)
    weights = torch.rand(nh + nkv, hd, generator=g) + 0.5 if qk_norm else None
    outputs = []
    for fn in (rope_and_cache, rope_and_cache_reference):
        caches = [torch.full((B + 1, nkv, S, hd), float("nan"), dtype=dtype, device=device) for _ in range(2)]
        q = fn(qkv.to(device, dtype), cos.to(device, dtype), sin_signed.to(device, dtype), *caches, columns.to(device),
               weights.to(device, dtype) if qk_norm else None, 1e-6, nh, nkv)
        outputs.append([q.float().cpu(), *(c.float().cpu() for c in caches)])
    for mine, reference in zip(*outputs):  # NaN where nothing was written, in both
        if dtype == torch.float32:
            torch.testing.assert_close(mine, reference, atol=1e-5, rtol=1e-5, equal_nan=True)
        else:  # bf16: the same roundings, at most one unit in the last place apart
            torch.testing.assert_close(mine, reference, atol=1e-2, rtol=1e-2, equal_nan=True)


def test_engine_weights_config_reaches_the_engine(target):
    from specdraft.plumbing.config import ConfigError, load_config, validate
    from specdraft.models.engine_choice import serve

    assert load_config(validate({})).engine_weights == "model_dtype"  # the schema's default
    assert load_config(validate({"engine_weights": "int8"})).engine_weights == "int8"
    with pytest.raises(ConfigError, match="engine_weights"):
        validate({"engine_weights": "int3"})
    served = serve(target, "native", max_seq_len=64, weights="int8")
    assert served.decoder.lm_head.weight.dtype == torch.int8
