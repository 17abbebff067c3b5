"""Weight-only int8 quantization (gpt-fast's scheme) and the one projection every decoder matmul goes through.

A weight [N, K] is stored as int8 with one scale per output channel (row): w ≈ q * scale[:, None], q in
[-127, 127], scale = max |w[n]| / 127. Activations stay in the model's dtype. A decode step reads half the
bytes of bf16. `linear` is the reference: it dequantizes the weight and multiplies, so in float32 the int8
engine computes exactly what an engine over the dequantized weights computes. On a CUDA device, steps of
at most `kernels.MAX_FAST_ROWS` rows run a Triton kernel instead that reads the int8 weight, scales it in
registers and adds the bias and residual in its epilogue (`specdraft.engine.kernels`; its RMSNorm and
SiLU·mul prologues are off, see FUSE_PROLOGUES there); everything else (a CPU, prefills) takes the
reference path.
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


def linear(x: Tensor, weight: Tensor, scale: Tensor | None = None, bias: Tensor | None = None,
           residual: Tensor | None = None, norm_weight: Tensor | None = None, eps: float = 1e-6,
           silu_mul: bool = False) -> Tensor:
    """residual + a @ W.T + bias, W = weight (scale None) or dequantize(weight, scale), where the input a is
    x, F.rms_norm(x) * norm_weight (norm_weight given), or silu(gate) * up for x = [gate | up] (silu_mul).

    x: [..., K] ([..., 2K] with silu_mul); weight: [N, K] (int8 when scale [N] is given); residual:
    [..., N] or None. The fused forms let the CUDA kernel do a layer's norm and activation in its matmul."""
    # Under torch.compile the reference path is what Inductor fuses into one kernel (gpt-fast's int8).
    if scale is not None and x.is_cuda and not torch.compiler.is_compiling():
        from specdraft.engine import kernels

        rows = x.numel() // x.shape[-1]
        if kernels.available() and rows <= kernels.MAX_FAST_ROWS:
            if kernels.FUSE_PROLOGUES:
                out = kernels.int8_linear(x, weight, scale, bias, residual, norm_weight, eps, silu_mul)
            else:
                out = kernels.int8_linear(_prologue(x, norm_weight, eps, silu_mul), weight, scale, bias, residual)
            if out is not None:
                return out
    x = _prologue(x, norm_weight, eps, silu_mul)
    w = weight if scale is None else dequantize(weight, scale, x.dtype)
    if residual is None:
        return F.linear(x, w, bias)
    out = torch.addmm(residual.reshape(-1, residual.shape[-1]), x.reshape(-1, x.shape[-1]), w.t())
    if bias is not None:
        out = out + bias
    return out.view(residual.shape)


def _prologue(x: Tensor, norm_weight: Tensor | None, eps: float, silu_mul: bool) -> Tensor:
    """`linear`'s input: x, F.rms_norm(x) * norm_weight, or silu(gate) * up for x = [gate | up]."""
    if norm_weight is not None:
        x = F.rms_norm(x, (x.shape[-1],), norm_weight, eps)
    if silu_mul:
        gate, up = x.chunk(2, dim=-1)
        x = F.silu(gate) * up
    return x
