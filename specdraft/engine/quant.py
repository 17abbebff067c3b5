"""Weight-only quantization and `linear`, the projection every decoder matmul goes through. int8: a scale per
row. int4 (gpt-fast's and AWQ's grouping): a scale per row and GROUP columns, the symmetric grid [-7, 7] so
nothing clips; two values a byte as q + 8, column 2j in byte j's low nibble."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from specdraft.engine import tuner as tuning
from specdraft.plumbing.names import INT4_GROUP as GROUP


@torch.no_grad()
def quantize_int8(weight: Tensor, scale_dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Per-row int8: weight [N, K] -> (q [N, K], scale [N]); q comes from the rounded scale actually used."""
    w = weight.float()
    scale = (w.abs().amax(dim=1) / 127).clamp_min(1e-8).to(scale_dtype)  # [N]; an all-zero row keeps q = 0
    q = torch.round(w / scale.float()[:, None]).clamp_(-127, 127).to(torch.int8)
    return q, scale


def dequantize(q: Tensor, scale: Tensor, dtype: torch.dtype) -> Tensor:
    """q [N, K] int8, scale [N] -> the weight [N, K] in `dtype` that `linear` multiplies by, rounded once."""
    return q * scale.to(dtype)[:, None]


@torch.no_grad()
def quantize_int4(weight: Tensor, scale_dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Symmetric int4 per GROUP input columns: weight [N, K] -> (packed [N, K / 2] uint8, scale [N, K / GROUP])."""
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
    """packed [N, K / 2] uint8, scale [N, K / GROUP] -> the weight [N, K] in `dtype`, rounded as `dequantize`."""
    q = unpack_int4(packed)
    N, K = q.shape
    return (q.view(N, K // GROUP, GROUP) * scale.to(dtype)[:, :, None]).view(N, K)


QUANTIZERS = {"int8": quantize_int8, "int4": quantize_int4}  # the quantized formats of WEIGHT_FORMATS
DEQUANTIZERS = {"int8": dequantize, "int4": dequantize_int4}
CHUNK_ELEMENTS = 2**24  # weights quantized at once, bounding float32 temporaries


@torch.no_grad()
def quantize_into(weight: Tensor, q: Tensor, scale: Tensor, weights: str, chunk_rows: int | None = None) -> None:
    """Quantize weight [N, K] into the preallocated q and scale, a block of rows at a time."""
    rows = chunk_rows or max(1, CHUNK_ELEMENTS // weight.shape[1])
    for start in range(0, weight.shape[0], rows):
        block_q, block_scale = QUANTIZERS[weights](weight[start : start + rows].to(q.device), scale.dtype)
        q[start : start + rows].copy_(block_q)
        scale[start : start + rows].copy_(block_scale)


@torch.no_grad()
def dequantized_copy(model: torch.nn.Module, weights: str) -> torch.nn.Module:
    """A copy of `model` whose Linears hold the weights an engine of `weights` multiplies by (its reference)."""
    import copy

    reference = copy.deepcopy(model)
    if weights in QUANTIZERS:
        for module in reference.modules():
            if isinstance(module, torch.nn.Linear):
                w = module.weight
                w.copy_(DEQUANTIZERS[weights](*QUANTIZERS[weights](w, w.dtype), w.dtype))
    return reference


class DequantWorkspace:
    """One buffer, reused by every matrix of a prefill, that a quantized weight is dequantized into before
    one matmul; grown to the largest matrix met."""

    def __init__(self):
        self._buffer: Tensor | None = None
        self._replaced: list[Tensor] = []  # kept alive: a captured prefill graph may still write into one

    @property
    def num_elements(self) -> int:
        return 0 if self._buffer is None else self._buffer.numel()

    def dequantized(self, weight: Tensor, scale: Tensor, dtype: torch.dtype) -> Tensor:
        """The dequantized weight [N, K] in `dtype`, a view of the buffer valid until the next call."""
        int4 = weight.dtype == torch.uint8
        N, K = weight.shape[0], weight.shape[1] * (2 if int4 else 1)
        buffer = self._buffer
        if buffer is None or buffer.numel() < N * K or buffer.dtype != dtype or buffer.device != weight.device:
            if buffer is not None:
                self._replaced.append(buffer)
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
    """Whether the Triton kernels run for x: CUDA with Triton, outside torch.compile (Inductor fuses there)."""
    if not x.is_cuda or torch.compiler.is_compiling():
        return False
    from specdraft.engine.launch import available

    return available()


def linear(x: Tensor, weight: Tensor, scale: Tensor | None = None, bias: Tensor | None = None,
           residual: Tensor | None = None, norm_weight: Tensor | None = None, eps: float = 1e-6,
           glu: bool = False, workspace: DequantWorkspace | None = None) -> Tensor:
    """residual + f(a @ W.T + bias): a = x or rms_norm(x) * norm_weight, W dequantized (uint8 weight: packed
    int4), f = identity or SiLU(gate) * up over W = [gate; up] (glu). x [..., K]; residual [..., N]."""
    from specdraft.engine import linear_kernel

    rows = x.numel() // x.shape[-1]
    dequantizing = workspace is not None and scale is not None and rows > linear_kernel.MAX_FAST_ROWS

    def dequantized_reference() -> Tensor:
        w = workspace.dequantized(weight, scale, x.dtype)
        return _reference(x, w, None, bias, residual, norm_weight, eps, glu)

    if fast_kernels(x) and tuning.current().launch.runs("linear") and rows <= linear_kernel.max_rows(scale):
        if dequantizing:  # the kernel against dequantizing once, then cuBLAS
            reference = dequantized_reference
        elif scale is None:
            reference = lambda: _reference(x, weight, scale, bias, residual, norm_weight, eps, glu)  # noqa: E731
        else:  # quantized, no workspace: torch's path would dequantize the whole weight each call
            reference = None
        out = linear_kernel.fused_linear(x, weight, scale, bias, residual, norm_weight, eps, glu, reference)
        if out is not None:
            return out
    if dequantizing:
        return dequantized_reference()
    return _reference(x, weight, scale, bias, residual, norm_weight, eps, glu)


def _reference(x: Tensor, weight: Tensor, scale: Tensor | None, bias: Tensor | None, residual: Tensor | None,
               norm_weight: Tensor | None, eps: float, glu: bool) -> Tensor:
    """`linear` in torch operations: the CPU path, prefills, and the kernel's reference."""
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
