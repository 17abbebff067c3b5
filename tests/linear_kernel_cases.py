"""The fused linear kernel's test cases: each candidate configuration forced, against the float64 reference."""

from __future__ import annotations

import pytest
import torch

from specdraft.engine import linear_kernel

# One test case per candidate, however many the kernel lists.
CANDIDATE_INDEXES = range(len(linear_kernel.CANDIDATES))
WIDE_CANDIDATE_INDEXES = range(len(linear_kernel.WIDE_CANDIDATES))
WIDE_ROWS = [40, 100]  # several row blocks of 32 and 64, the last one part-filled
# Where the norm runs: inside the kernel, torch's rms_norm before it, or the Triton prepass before it.
NORM_PLACEMENTS = {"norm-inside": dict(fuse_norm=True), "norm-before": dict(fuse_norm=False),
                   "norm-prepass": dict(fuse_norm=False, norm_prepass=True)}


def forced_candidate(config: int, placement: str, fusion: str, rows: int, dtype: torch.dtype, int4: bool = False,
                     wide: bool = False, **fields):
    """`linear_kernel.CANDIDATES[config]` (wide: WIDE_CANDIDATES') with the norm at `placement` (a key of
    NORM_PLACEMENTS) and `fields` set, or a skip where that case does not exist (no norm to place, a one-row
    form for several rows, a tile of more rows than the case has, a prepass above 16 rows, int4 groups split)
    or adds nothing (bf16 under the interpreter)."""
    pytest.importorskip("triton")
    if placement != "norm-inside" and "norm" not in fusion:
        pytest.skip("no norm to place")
    candidate = (linear_kernel.WIDE_CANDIDATES if wide else linear_kernel.CANDIDATES)[config]._replace(
        **NORM_PLACEMENTS[placement], **fields)
    if candidate not in linear_kernel.candidates_for(rows, norm="norm" in fusion, int4=int4):
        pytest.skip(f"{candidate} is not a candidate for {rows} rows{' of int4' if int4 else ''}")
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
