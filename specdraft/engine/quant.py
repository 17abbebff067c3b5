"""Weight-only int8 quantization (gpt-fast's scheme) and the one projection every decoder matmul goes through.

A weight [N, K] is stored as int8 with one scale per output channel (row): w ≈ q * scale[:, None], q in
[-127, 127], scale = max |w[n]| / 127. Activations stay in the model's dtype. A decode step reads half the
bytes of bf16. `linear` is the reference: it dequantizes the weight and multiplies, so in float32 the int8
engine computes exactly what an engine over the dequantized weights computes. On a CUDA device, steps of
at most `kernels.MAX_FAST_ROWS` rows run one Triton kernel instead that reads the int8 weight, scales it
in registers and folds in the layer's RMSNorm, bias, SiLU·mul and residual add
(`specdraft.engine.kernels.fused_linear`); everything else (a CPU, prefills) takes the reference path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

WEIGHT_FORMATS = ("bf16", "int8")  # `engine_weights` in the config; bf16 means the model's own dtype


@torch.no_grad()
def quantize_int8(weight: Tensor, scale_dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Symmetric per-output-channel int8: weight [N, K] -> (q [N, K] int8, scale [N] of `scale_dtype`).

    The scale is rounded to `scale_dtype` before q is computed, so q * scale is the stored weight's best
    int8 approximation with the scale actually used."""
    w = weight.float()
    scale = (w.abs().amax(dim=1) / 127).clamp_min(1e-8).to(scale_dtype)  # [N]; an all-zero row keeps q = 0
    q = torch.round(w / scale.float()[:, None]).clamp_(-127, 127).to(torch.int8)
    return q, scale


def dequantize(q: Tensor, scale: Tensor, dtype: torch.dtype) -> Tensor:
    """q [N, K] int8, scale [N] -> the weight [N, K] in `dtype` that `linear`'s reference path multiplies by."""
    return q.to(dtype) * scale.to(dtype)[:, None]


def fast_kernels(x: Tensor) -> bool:
    """Whether the Triton kernels run for a step on x: on a CUDA device with Triton, outside torch.compile
    (under which Inductor fuses the reference path itself, as gpt-fast's int8 does)."""
    if not x.is_cuda or torch.compiler.is_compiling():
        return False
    from specdraft.engine import kernels

    return kernels.available()


def linear(x: Tensor, weight: Tensor, scale: Tensor | None = None, bias: Tensor | None = None,
           residual: Tensor | None = None, norm_weight: Tensor | None = None, eps: float = 1e-6,
           glu: bool = False) -> Tensor:
    """residual + f(a @ W.T + bias), where W = weight (scale None) or dequantize(weight, scale), the input a
    is x or F.rms_norm(x) * norm_weight (norm_weight given), and f is the identity or, with glu, SiLU(gate) *
    up over the two halves of the output (W = [gate; up], 2N rows: a layer's MLP activation).

    x: [..., K]; weight: [N', K] (int8 when scale [N'] is given); residual: [..., N] or None (not with glu).
    On a CUDA device, steps of at most `kernels.MAX_FAST_ROWS` rows run `kernels.fused_linear` (one kernel
    for all of it; for floating weights only where it timed faster than this path on first use)."""
    if fast_kernels(x):
        from specdraft.engine import kernels

        if x.numel() // x.shape[-1] <= kernels.MAX_FAST_ROWS:
            reference = None if scale is not None else (
                lambda: _reference(x, weight, scale, bias, residual, norm_weight, eps, glu))
            out = kernels.fused_linear(x, weight, scale, bias, residual, norm_weight, eps, glu, reference)
            if out is not None:
                return out
    return _reference(x, weight, scale, bias, residual, norm_weight, eps, glu)


def _reference(x: Tensor, weight: Tensor, scale: Tensor | None, bias: Tensor | None, residual: Tensor | None,
               norm_weight: Tensor | None, eps: float, glu: bool) -> Tensor:
    """`linear` in torch operations: the CPU path, prefills, and what the kernel is checked against."""
    if glu and residual is not None:
        raise ValueError("glu and residual do not combine (a layer adds its residual after the down projection)")
    if norm_weight is not None:
        x = F.rms_norm(x, (x.shape[-1],), norm_weight, eps)
    w = weight if scale is None else dequantize(weight, scale, x.dtype)
    if residual is None:
        out = F.linear(x, w, bias)
        if glu:
            gate, up = out.chunk(2, dim=-1)
            out = F.silu(gate) * up
        return out
    out = torch.addmm(residual.reshape(-1, residual.shape[-1]), x.reshape(-1, x.shape[-1]), w.t())
    if bias is not None:
        out = out + bias
    return out.view(residual.shape)
