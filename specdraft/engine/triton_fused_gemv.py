"""The matrix-vector products of `triton_fused_step`: a program's share of output columns of one row times a
matrix (norm, scale, bias, SiLU-gated pair, residual and argmax fused), and L2 prefetch of later phases' rows."""

import triton
import triton.language as tl

from specdraft.engine.triton_common import prefetch_to_l2

BIG = tl.constexpr(2**30)


@triton.jit
def prefetch_rows(w_ptr, lo, hi, stride_w, row_lines, LINE_ELEMS: tl.constexpr, CAP: tl.constexpr,
                  PREFETCH: tl.constexpr):
    """Ask L2 for weight rows lo..hi-1 (row_lines cache lines each), at most CAP lines: loads of later phases
    then find them there while this phase and its barrier run."""
    if PREFETCH:
        total = tl.minimum((hi - lo) * row_lines, CAP)
        for i0 in range(0, total, 256):
            i = i0 + tl.arange(0, 256)
            ptrs = w_ptr + (lo + i // row_lines).to(tl.int64) * stride_w + (i % row_lines) * LINE_ELEMS
            prefetch_to_l2(ptrs, i < total, PREFETCH)


@triton.jit
def gemv_columns(x_ptr, nw_ptr, w_ptr, s_ptr, b_ptr, r_ptr, o_ptr, lo, hi, N, K, stride_w, eps,
                 NORM: tl.constexpr, HAS_SCALE: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_RESIDUAL: tl.constexpr,
                 GLU: tl.constexpr, ARGMAX: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                 AHEAD: tl.constexpr, LINE_ELEMS: tl.constexpr, PREFETCH: tl.constexpr):
    """Output columns lo..hi-1 of residual + f(a @ W.T + bias) for one row x [K], with `linear_kernel`'s
    rounding (a = x * norm_weight, 1/rms after the sum). One tile of BLOCK_N rows a round of loads, the rows
    AHEAD tiles on asked for in L2 meanwhile; x is read with .cg (other SMs wrote it this launch).
    ARGMAX: returns the largest stored value and its first column (as torch.argmax picks)."""
    dtype = o_ptr.dtype.element_ty
    best = tl.full([], float("-inf"), tl.float32)
    best_col = tl.full([], BIG, tl.int32)
    for n0 in range(lo, hi, BLOCK_N):
        if AHEAD > 0:
            ahead = n0 + AHEAD * BLOCK_N
            row_lines = tl.cdiv(K, LINE_ELEMS)
            prefetch_rows(w_ptr, ahead, tl.minimum(ahead + BLOCK_N, hi), stride_w, row_lines, LINE_ELEMS, 4096,
                          PREFETCH)
            if GLU:
                prefetch_rows(w_ptr + N * stride_w, ahead, tl.minimum(ahead + BLOCK_N, hi), stride_w, row_lines,
                              LINE_ELEMS, 4096, PREFETCH)
        cols = n0 + tl.arange(0, BLOCK_N)
        col_ok = cols < hi
        rows = cols.to(tl.int64) * stride_w
        out = tl.zeros((BLOCK_N,), dtype=tl.float32)
        out_up = tl.zeros((BLOCK_N,), dtype=tl.float32)
        squares = tl.zeros((BLOCK_K,), dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            ks = k0 + tl.arange(0, BLOCK_K)
            k_ok = ks < K
            a = tl.load(x_ptr + ks, mask=k_ok, other=0.0, cache_modifier=".cg")
            wmask = col_ok[:, None] & k_ok[None, :]
            w = tl.load(w_ptr + rows[:, None] + ks[None, :], mask=wmask, other=0)
            if GLU:
                w_up = tl.load(w_ptr + N * stride_w + rows[:, None] + ks[None, :], mask=wmask, other=0)
            if NORM:
                af = a.to(tl.float32)
                squares += af * af
                a = (a * tl.load(nw_ptr + ks, mask=k_ok, other=0.0)).to(a.dtype)
            out += tl.sum(a.to(tl.float32)[None, :] * w.to(tl.float32), axis=1)
            if GLU:
                out_up += tl.sum(a.to(tl.float32)[None, :] * w_up.to(tl.float32), axis=1)
        if NORM:
            rstd = 1.0 / tl.sqrt(tl.sum(squares, axis=0) / K + eps)
            out = out * rstd
            out_up = out_up * rstd
        if HAS_SCALE:
            out = out * tl.load(s_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
            if GLU:
                out_up = out_up * tl.load(s_ptr + N + cols, mask=col_ok, other=0.0).to(tl.float32)
        if HAS_BIAS:
            out += tl.load(b_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
        if GLU:  # as F.silu(gate) * up on the rounded matmul outputs
            gate = out.to(dtype).to(tl.float32)
            out = ((gate * tl.sigmoid(gate)).to(dtype) * out_up.to(dtype)).to(tl.float32)
        if HAS_RESIDUAL:
            out += tl.load(r_ptr + cols, mask=col_ok, other=0.0, cache_modifier=".cg").to(tl.float32)
        stored = out.to(dtype)
        tl.store(o_ptr + cols, stored, mask=col_ok)
        if ARGMAX:
            value = tl.where(col_ok, stored.to(tl.float32), -float("inf"))
            block_best = tl.max(value, axis=0)
            block_col = tl.min(tl.where((value == block_best) & col_ok, cols, BIG), axis=0)
            take = block_best > best
            best_col = tl.where(take, block_col, best_col)
            best = tl.where(take, block_best, best)
    return best, best_col
