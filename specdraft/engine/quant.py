"""Weight-only int8 and int4 quantization and the one projection every decoder matmul goes through.

A weight [N, K] is stored as int8 with one scale per output channel (row): w ≈ q * scale[:, None], q in
[-127, 127], scale = max |w[n]| / 127. Activations stay in the model's dtype. A decode step reads half the
bytes of bf16. `linear` is the reference: it dequantizes the weight and multiplies, so in float32 the int8
engine computes exactly what an engine over the dequantized weights computes. On a CUDA device, steps of
at most `linear_kernel.MAX_FAST_ROWS` rows run one Triton kernel instead that reads the int8 weight, scales it
in registers and folds in the layer's RMSNorm, bias, SiLU·mul and residual add
(`specdraft.engine.linear_kernel.fused_linear`); everything else (a CPU, prefills) takes the reference path.

int4 (gpt-fast's and AWQ's grouping, symmetric): one scale per output row and group of GROUP = 128 input
columns, scale = max |w| / 7 over the group, q = round(w / scale) in [-7, 7]. The symmetric grid [-7, 7]
(not [-8, 7]) so that every value, the group's largest of either sign included, rounds to its nearest grid
point with no clipping; it gives up one of the 16 levels. Two values go in one byte, as q + 8 (1..15):
column 2j in the low nibble and column 2j + 1 in the high nibble of byte j, so a packed weight is uint8
[N, K / 2] (a quarter of bf16's bytes, plus one scale per 128 weights) and its scales [N, K / GROUP].
K must be a multiple of GROUP (every matrix of the seed's models is); a matrix that is not is rejected
with its name, not silently kept in another format. A uint8 weight in `linear` means packed int4.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from specdraft.engine import tuner as tuning
from specdraft.plumbing.names import INT4_GROUP as GROUP


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
    """q [N, K] int8, scale [N] -> the weight [N, K] in `dtype` that `linear`'s reference path multiplies by:
    q (exact in `dtype`) times its row's scale, rounded once to `dtype`. One kernel reading the int8 weight
    (int8 times a floating tensor gives that tensor's dtype), not a cast to `dtype` first: a prefill runs it
    for every matrix."""
    return q * scale.to(dtype)[:, None]


@torch.no_grad()
def quantize_int4(weight: Tensor, scale_dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Symmetric int4 per group of GROUP input columns: weight [N, K] -> (packed [N, K / 2] uint8, scale
    [N, K / GROUP] of `scale_dtype`); see the module's docstring for the grid and the nibble order.

    As for int8, the scale is rounded to `scale_dtype` before q is computed."""
    N, K = weight.shape
    if K % GROUP:
        raise ValueError(f"int4 groups {GROUP} input columns: K must be a multiple of {GROUP}, got [{N}, {K}]")
    w = weight.float().view(N, K // GROUP, GROUP)
    scale = (w.abs().amax(dim=2) / 7).clamp_min(1e-8).to(scale_dtype)  # [N, K/G]; an all-zero group keeps q = 0
    q = (torch.round(w / scale.float()[:, :, None]).clamp_(-7, 7) + 8).view(N, K).to(torch.uint8)  # 1..15
    return q[:, 0::2] | (q[:, 1::2] << 4), scale


def unpack_int4(packed: Tensor) -> Tensor:
    """packed [N, K / 2] uint8 -> q [N, K] int8 in [-7, 7] (low nibble: even column, high: odd)."""
    low = (packed & 15).to(torch.int8) - 8
    high = (packed >> 4).to(torch.int8) - 8
    return torch.stack((low, high), dim=-1).view(packed.shape[0], -1)


def dequantize_int4(packed: Tensor, scale: Tensor, dtype: torch.dtype) -> Tensor:
    """packed [N, K / 2] uint8, scale [N, K / GROUP] -> the weight [N, K] in `dtype` that `linear`'s reference
    path multiplies by (q times its group's scale, each rounded to `dtype` as int8's `dequantize` does)."""
    q = unpack_int4(packed)
    N, K = q.shape
    return (q.view(N, K // GROUP, GROUP) * scale.to(dtype)[:, :, None]).view(N, K)


QUANTIZERS = {"int8": quantize_int8, "int4": quantize_int4}  # the quantized formats of WEIGHT_FORMATS
DEQUANTIZERS = {"int8": dequantize, "int4": dequantize_int4}
CHUNK_ELEMENTS = 2**24  # weights quantized at once: 64 MiB of float32 temporaries, whatever the matrix


@torch.no_grad()
def quantize_into(weight: Tensor, q: Tensor, scale: Tensor, weights: str, chunk_rows: int | None = None) -> None:
    """Quantize weight [N, K] (on any device) into the preallocated q and scale (on theirs) a block of rows at a
    time, so no float32 copy of the whole matrix is ever made. Every scale is a row's (int8) or a row's
    group's (int4): blocks of rows give exactly the whole matrix's result."""
    rows = chunk_rows or max(1, CHUNK_ELEMENTS // weight.shape[1])
    for start in range(0, weight.shape[0], rows):
        block_q, block_scale = QUANTIZERS[weights](weight[start : start + rows].to(q.device), scale.dtype)
        q[start : start + rows].copy_(block_q)
        scale[start : start + rows].copy_(block_scale)


@torch.no_grad()
def dequantized_copy(model: torch.nn.Module, weights: str) -> torch.nn.Module:
    """A copy of `model` (a Hugging Face model) whose every Linear (layer matrices and lm-head; the embedding
    table kept) holds the weight an engine of `weights` multiplies by: what that engine computes, as a
    Hugging Face model, the reference of the quantized engine's checks. 'model_dtype': a plain copy."""
    import copy

    reference = copy.deepcopy(model)
    if weights in QUANTIZERS:
        for module in reference.modules():
            if isinstance(module, torch.nn.Linear):
                w = module.weight
                w.copy_(DEQUANTIZERS[weights](*QUANTIZERS[weights](w, w.dtype), w.dtype))
    return reference


class DequantWorkspace:
    """One buffer, reused by every matrix of a prefill, into which a quantized weight is dequantized before
    one cuBLAS matmul (more rows than the fused kernel takes: the matmul is then bound by arithmetic, not by
    the weight's bytes). Grown to the largest matrix met; on a CUDA device with Triton one kernel reads the
    quantized weight and writes the buffer, elsewhere torch does; both round as `dequantize` does."""

    def __init__(self):
        self._buffer: Tensor | None = None

    @property
    def num_elements(self) -> int:
        """Elements the buffer holds (0 until a prefill first uses it)."""
        return 0 if self._buffer is None else self._buffer.numel()

    def dequantized(self, weight: Tensor, scale: Tensor, dtype: torch.dtype) -> Tensor:
        """The weight [N, K] in `dtype` that `linear`'s reference multiplies by, as a view of the buffer
        (valid until the next call)."""
        int4 = weight.dtype == torch.uint8
        N, K = weight.shape[0], weight.shape[1] * (2 if int4 else 1)
        buffer = self._buffer
        if buffer is None or buffer.numel() < N * K or buffer.dtype != dtype or buffer.device != weight.device:
            buffer = self._buffer = torch.empty(N * K, dtype=dtype, device=weight.device)
        out = buffer[: N * K].view(N, K)
        if fast_kernels(weight) and tuning.current().launch.runs("linear"):
            _dequantize_kernel(weight, scale, out, int4)
        elif int4:
            torch.mul(unpack_int4(weight).view(N, K // GROUP, GROUP), scale.to(dtype)[:, :, None],
                      out=out.view(N, K // GROUP, GROUP))
        else:
            torch.mul(weight, scale.to(dtype)[:, None], out=out)
        return out


def _dequantize_kernel(weight: Tensor, scale: Tensor, out: Tensor, int4: bool) -> None:
    import triton

    from specdraft.engine import triton_linear

    N, K = out.shape
    block_n, block_k = 32, GROUP
    scale = scale.contiguous()
    triton_linear.dequantize_kernel[(triton.cdiv(N, block_n), triton.cdiv(K, block_k))](
        weight, scale, out, N, K, weight.stride(0), scale.stride(0) if int4 else 0, INT4=int4,
        GROUP=GROUP, BLOCK_N=block_n, BLOCK_K=block_k, num_warps=4)


def fast_kernels(x: Tensor) -> bool:
    """Whether the Triton kernels run for a step on x: on a CUDA device with Triton, outside torch.compile
    (under which Inductor fuses the reference path itself, as gpt-fast's int8 does)."""
    if not x.is_cuda or torch.compiler.is_compiling():
        return False
    from specdraft.engine.launch import available

    return available()


def linear(x: Tensor, weight: Tensor, scale: Tensor | None = None, bias: Tensor | None = None,
           residual: Tensor | None = None, norm_weight: Tensor | None = None, eps: float = 1e-6,
           glu: bool = False, workspace: DequantWorkspace | None = None) -> Tensor:
    """residual + f(a @ W.T + bias), where W = weight (scale None), dequantize(weight, scale) (int8 weight) or
    dequantize_int4(weight, scale) (uint8 weight: packed int4), the input a
    is x or F.rms_norm(x) * norm_weight (norm_weight given), and f is the identity or, with glu, SiLU(gate) *
    up over the two halves of the output (W = [gate; up], 2N rows: a layer's MLP activation).

    x: [..., K]; weight: [N', K] (int8 when scale [N'] is given) or [N', K / 2] uint8 (int4, scale
    [N', K / GROUP]); residual: [..., N] or None (not with glu).
    On a CUDA device, steps of at most `linear_kernel.MAX_FAST_ROWS` rows run `linear_kernel.fused_linear` (one kernel
    for all of it; for floating weights only where it timed faster than this path on first use). With a
    `workspace`, more rows than that (a prefill) dequantize a quantized weight into it, then multiply."""
    from specdraft.engine import linear_kernel

    rows = x.numel() // x.shape[-1]
    if workspace is not None and scale is not None and rows > linear_kernel.MAX_FAST_ROWS:
        w = workspace.dequantized(weight, scale, x.dtype)
        return _reference(x, w, None, bias, residual, norm_weight, eps, glu)
    if fast_kernels(x) and tuning.current().launch.runs("linear"):
        if rows <= linear_kernel.MAX_FAST_ROWS:
            reference = None if scale is not None else (
                lambda: _reference(x, weight, scale, bias, residual, norm_weight, eps, glu))
            out = linear_kernel.fused_linear(x, weight, scale, bias, residual, norm_weight, eps, glu, reference)
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
    if scale is None:
        w = weight
    elif weight.dtype == torch.uint8:
        w = dequantize_int4(weight, scale, x.dtype)
    else:
        w = dequantize(weight, scale, x.dtype)
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
