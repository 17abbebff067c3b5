"""Triton kernels for the decode path on a CUDA device (imported only there; the CPU path never needs Triton).

`int8_linear`: out = residual + (x @ q.T) * scale + bias for x of at most MAX_FAST_ROWS rows (a decode step,
a verification, a batch of a few rows) and an int8 weight q [N, K] with per-output-channel scales. A
step at these sizes is bound by reading the weight, so the kernel reads the int8 weight once and converts
it in registers (bf16 weights dequantized by torch first would read 3x the bytes), and applies the scale,
bias and residual add in its epilogue (one kernel where eager torch needs three). Each program owns
BLOCK_N output channels for every row and walks K; the block shapes are autotuned per (N, K) on first use
(before a CUDA graph captures the step). Triton's interpreter (TRITON_INTERPRET=1) runs it on a CPU.
"""

from __future__ import annotations

import functools
import os

import torch
from torch import Tensor

MAX_FAST_ROWS = 16  # one tensor-core tile of rows; more rows (prefills) take the reference path


@functools.cache
def available() -> bool:
    """Triton importable and a CUDA device present (or the interpreter asked for, for tests on a CPU)."""
    if os.environ.get("SPECDRAFT_NO_TRITON"):
        return False
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"


@functools.cache
def _kernel():
    import triton
    import triton.language as tl

    configs = [triton.Config({"BLOCK_N": n, "BLOCK_K": k}, num_warps=w, num_stages=s)
               for n, k, w, s in [(16, 512, 4, 4), (32, 256, 4, 4), (32, 512, 4, 3), (64, 256, 4, 4),
                                  (64, 128, 4, 5), (128, 128, 8, 4)]]
    if os.environ.get("TRITON_INTERPRET") == "1":
        configs = configs[1:2]  # the interpreter runs one, slowly

    @triton.autotune(configs=configs, key=["N", "K", "BLOCK_M"])
    @triton.jit
    def int8_linear_kernel(x_ptr, w_ptr, s_ptr, b_ptr, r_ptr, o_ptr, M, N, K, stride_xm, stride_wn, stride_rm,
                           stride_om, HAS_BIAS: tl.constexpr, HAS_RESIDUAL: tl.constexpr, IEEE: tl.constexpr,
                           BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
        pid = tl.program_id(0)
        rows = tl.arange(0, BLOCK_M)
        cols = pid * BLOCK_N + tl.arange(0, BLOCK_N)
        ks = tl.arange(0, BLOCK_K)
        row_ok, col_ok = rows < M, cols < N
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            k_ok = (k0 + ks) < K
            x = tl.load(x_ptr + rows[:, None] * stride_xm + (k0 + ks)[None, :], mask=row_ok[:, None] & k_ok[None, :],
                        other=0.0)  # [BLOCK_M, BLOCK_K]
            w = tl.load(w_ptr + cols[:, None] * stride_wn + (k0 + ks)[None, :], mask=col_ok[:, None] & k_ok[None, :],
                        other=0)  # [BLOCK_N, BLOCK_K] int8
            if IEEE:
                acc = tl.dot(x, tl.trans(w.to(x.dtype)), acc, input_precision="ieee")
            else:
                acc = tl.dot(x, tl.trans(w.to(x.dtype)), acc)
        acc = acc * tl.load(s_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
        if HAS_BIAS:
            acc += tl.load(b_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
        out_mask = row_ok[:, None] & col_ok[None, :]
        if HAS_RESIDUAL:
            acc += tl.load(r_ptr + rows[:, None] * stride_rm + cols[None, :], mask=out_mask, other=0.0).to(tl.float32)
        tl.store(o_ptr + rows[:, None] * stride_om + cols[None, :], acc.to(o_ptr.dtype.element_ty), mask=out_mask)

    return int8_linear_kernel


def int8_linear(x: Tensor, q: Tensor, scale: Tensor, bias: Tensor | None = None,
                residual: Tensor | None = None) -> Tensor:
    """residual + (x @ q.T) * scale + bias. x: [..., K] (at most MAX_FAST_ROWS rows); q: [N, K] int8;
    scale, bias: [N]; residual: [..., N]. Returns [..., N] in x's dtype."""
    import triton

    K, N = x.shape[-1], q.shape[0]
    x2 = x.reshape(-1, K)
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    M = x2.shape[0]
    if M > MAX_FAST_ROWS:
        raise ValueError(f"int8_linear takes at most {MAX_FAST_ROWS} rows, got {M}")
    out = torch.empty((M, N), dtype=x.dtype, device=x.device)
    r2 = residual.reshape(-1, N) if residual is not None else out
    if r2.stride(-1) != 1:
        r2 = r2.contiguous()
    kernel = _kernel()
    grid = lambda meta: (triton.cdiv(N, meta["BLOCK_N"]),)  # noqa: E731
    kernel[grid](x2, q, scale, bias if bias is not None else scale, r2, out, M, N, K, x2.stride(0), q.stride(0),
                 r2.stride(0), out.stride(0), HAS_BIAS=bias is not None, HAS_RESIDUAL=residual is not None,
                 IEEE=x.dtype == torch.float32, BLOCK_M=16)
    return out.view(*x.shape[:-1], N)
