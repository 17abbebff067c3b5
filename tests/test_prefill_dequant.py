"""A prefill of quantized weights: each matrix dequantized into one reused buffer (`quant.DequantWorkspace`),
then one matmul, equals the dequantized reference exactly (in float32, and in bf16 the same rounding); the
engine's prefill goes through it. Under TRITON_INTERPRET=1 with triton, the dequantization kernel runs."""

import os

import pytest
import torch

from specdraft.engine.quant import (GROUP, DequantWorkspace, dequantize, dequantize_int4, linear, quantize_int4,
                                    quantize_int8)

QUANTIZE = {"int8": (quantize_int8, dequantize), "int4": (quantize_int4, dequantize_int4)}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
@pytest.mark.parametrize("weights", ["int8", "int4"])
def test_the_workspace_holds_the_reference_weight_and_is_reused(weights, dtype):
    quantize, reference = QUANTIZE[weights]
    g = torch.Generator().manual_seed(0)
    workspace = DequantWorkspace()
    big = quantize(torch.randn(96, 3 * GROUP, generator=g), dtype)
    small = quantize(torch.randn(40, 2 * GROUP + (0 if weights == "int4" else 7), generator=g), dtype)
    first = workspace.dequantized(*big, dtype)
    assert torch.equal(first, reference(*big, dtype))
    pointer = first.data_ptr()
    second = workspace.dequantized(*small, dtype)
    assert torch.equal(second, reference(*small, dtype)) and second.data_ptr() == pointer  # the same buffer


@pytest.mark.parametrize("weights", ["int8", "int4"])
@pytest.mark.parametrize("fusion", ["plain", "bias+norm", "glu+norm", "residual"])
def test_a_prefill_through_the_workspace_equals_the_reference_path(weights, fusion):
    quantize, reference = QUANTIZE[weights]
    g = torch.Generator().manual_seed(1)
    n, k, rows = 2 * 64, 2 * GROUP, 40  # more rows than the fused kernel takes
    q, scale = quantize(torch.randn(n, k, generator=g), torch.float32)
    x = torch.randn(2, rows // 2, k, generator=g)
    kwargs = dict(bias=torch.randn(n, generator=g) if "bias" in fusion else None,
                  residual=torch.randn(2, rows // 2, n, generator=g) if "residual" in fusion else None,
                  norm_weight=torch.rand(k, generator=g) + 0.5 if "norm" in fusion else None, glu="glu" in fusion)
    workspace = DequantWorkspace()
    out = linear(x, q, scale, workspace=workspace, **kwargs)
    assert workspace.num_elements == n * k  # the prefill path ran
    assert torch.equal(out, linear(x, reference(q, scale, torch.float32), **kwargs))


def test_the_engine_prefill_dequantizes_into_its_workspace(target):
    """A 40-token prompt (a prefill, more than 16 rows) on the int8 engine: its logits equal those of the
    engine over the dequantized model, in float32, and the workspace holds the last matrix it multiplied."""
    from specdraft.engine import Engine
    from specdraft.engine.quant import dequantized_copy

    prompt = torch.randint(0, 97, (40,), generator=torch.Generator().manual_seed(0))
    quantized = Engine.from_hf(target, max_seq_len=64, weights="int8")
    logits = quantized.open_session(64).forward(prompt, 40)
    assert quantized.decoder.dequant_workspace.num_elements > 0
    expected = Engine.from_hf(dequantized_copy(target, "int8"), max_seq_len=64).open_session(64).forward(prompt, 40)
    assert torch.equal(logits, expected)  # the same weights and the same operations


@pytest.mark.parametrize("weights", ["int8", "int4"])
def test_the_dequantization_kernel_rounds_as_the_reference(weights):
    """The Triton kernel a CUDA device's workspace runs (here under the interpreter, or on the GPU), over a
    matrix that fills no tile exactly; scales stored in float32 for bf16 activations, so they round first."""
    if not (torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"):
        pytest.skip("the Triton kernel needs a CUDA device or TRITON_INTERPRET=1 with triton")
    pytest.importorskip("triton")
    from specdraft.engine.quant import _dequantize_kernel

    device = "cuda" if torch.cuda.is_available() else "cpu"
    quantize, reference = QUANTIZE[weights]
    q, scale = quantize(torch.randn(70, 3 * GROUP + (0 if weights == "int4" else 5)), torch.float32)
    # The interpreter has no bf16 arithmetic (numpy): its conversion does not round to nearest.
    for dtype in (torch.float32, torch.bfloat16) if device == "cuda" else (torch.float32,):
        out = torch.full((q.shape[0], q.shape[1] * (2 if weights == "int4" else 1)), float("nan"), dtype=dtype,
                         device=device)
        _dequantize_kernel(q.to(device), scale.to(device), out, weights == "int4")
        assert torch.equal(out.cpu(), reference(q, scale, dtype)), dtype
