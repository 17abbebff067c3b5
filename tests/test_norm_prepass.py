"""`linear_kernel.norm_prepass`: x scaled by the norm weight as the matmul kernel rounds it inside, and each
row's sum of squares, for rows strided in memory and for more columns than one round of the kernel."""

import os

import pytest
import torch


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available(),
                    reason="the Triton kernel needs a CUDA device or TRITON_INTERPRET=1 with triton")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("k", [300, 9000])  # one round of the kernel, and two of 8192 columns
def test_norm_prepass_rounds_as_inside_and_sums_each_rows_squares(dtype, k):
    pytest.importorskip("triton")
    if not torch.cuda.is_available() and dtype == torch.bfloat16:
        pytest.skip("Triton 3.6's interpreter multiplies bf16 by bf16 wrongly (garbage, not a rounding): GPU only")
    from specdraft.engine import tuner as tuning
    from specdraft.engine.linear_kernel import norm_prepass

    device = "cuda" if torch.cuda.is_available() else "cpu"
    g = torch.Generator().manual_seed(k)
    wide = torch.randn(5, k + 7, generator=g).to(device, dtype)
    x = wide[:, 3:3 + k]  # rows k + 7 apart
    norm_weight = (torch.rand(k, generator=g) + 0.5).to(device, dtype)
    with tuning.use(tuning.KernelTuner()):
        scaled, squares = norm_prepass(x, norm_weight)
    assert torch.equal(scaled, x * norm_weight)  # elementwise in x's dtype, as `linear_kernel` rounds inside
    assert squares.dtype == torch.float32
    torch.testing.assert_close(squares, x.float().pow(2).sum(-1), rtol=1e-5, atol=0)
