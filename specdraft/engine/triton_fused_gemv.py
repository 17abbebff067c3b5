"""The matrix-vector products of `triton_fused_step`: a program's share of output columns of one row times a
matrix (norm, scale, bias, SiLU-gated pair, residual and argmax fused), and L2 prefetch of later phases' rows."""

import triton
import triton.language as tl

from specdraft.engine.triton_common import prefetch_to_l2, scale_and_bias

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
                 AHEAD: tl.constexpr, LINE_ELEMS: tl.constexpr, PREFETCH: tl.constexpr, LOADS_AHEAD: tl.constexpr):
    """Output columns lo..hi-1 of residual + f(a @ W.T + bias) for one row x [K], with `linear_kernel`'s
    rounding (a = x * norm_weight, 1/rms after the sum), one tile of BLOCK_N rows a round of loads; the rows
    AHEAD tiles on asked for in L2 meanwhile. LOADS_AHEAD: each round's loads issued a round early.
    ARGMAX: returns the largest stored value and its first column (as torch.argmax picks)."""
    if LOADS_AHEAD:
        best, best_col = gemv_columns_ahead(x_ptr, nw_ptr, w_ptr, s_ptr, b_ptr, r_ptr, o_ptr, lo, hi, N, K,
                                            stride_w, eps, NORM, HAS_SCALE, HAS_BIAS, HAS_RESIDUAL, GLU, ARGMAX,
                                            BLOCK_N, BLOCK_K, AHEAD, LINE_ELEMS, PREFETCH)
    else:
        best, best_col = gemv_columns_in_turn(x_ptr, nw_ptr, w_ptr, s_ptr, b_ptr, r_ptr, o_ptr, lo, hi, N, K,
                                              stride_w, eps, NORM, HAS_SCALE, HAS_BIAS, HAS_RESIDUAL, GLU, ARGMAX,
                                              BLOCK_N, BLOCK_K, AHEAD, LINE_ELEMS, PREFETCH)
    return best, best_col


@triton.jit
def l2_ahead(w_ptr, n0, hi, N, K, stride_w, GLU: tl.constexpr, BLOCK_N: tl.constexpr, AHEAD: tl.constexpr,
             LINE_ELEMS: tl.constexpr, PREFETCH: tl.constexpr):
    """Ask L2 for the tile AHEAD tiles past the one at n0 (gate's and up's under GLU)."""
    if AHEAD > 0:
        ahead = n0 + AHEAD * BLOCK_N
        row_lines = tl.cdiv(K, LINE_ELEMS)
        prefetch_rows(w_ptr, ahead, tl.minimum(ahead + BLOCK_N, hi), stride_w, row_lines, LINE_ELEMS, 4096,
                      PREFETCH)
        if GLU:
            prefetch_rows(w_ptr + N * stride_w, ahead, tl.minimum(ahead + BLOCK_N, hi), stride_w, row_lines,
                          LINE_ELEMS, 4096, PREFETCH)


@triton.jit
def gemv_columns_in_turn(x_ptr, nw_ptr, w_ptr, s_ptr, b_ptr, r_ptr, o_ptr, lo, hi, N, K, stride_w, eps,
                         NORM: tl.constexpr, HAS_SCALE: tl.constexpr, HAS_BIAS: tl.constexpr,
                         HAS_RESIDUAL: tl.constexpr, GLU: tl.constexpr, ARGMAX: tl.constexpr, BLOCK_N: tl.constexpr,
                         BLOCK_K: tl.constexpr, AHEAD: tl.constexpr, LINE_ELEMS: tl.constexpr,
                         PREFETCH: tl.constexpr):
    """`gemv_columns` a round at a time: each round's tile loaded, then summed, before the next is asked for."""
    best = tl.full([], float("-inf"), tl.float32)
    best_col = tl.full([], BIG, tl.int32)
    for n0 in range(lo, hi, BLOCK_N):
        l2_ahead(w_ptr, n0, hi, N, K, stride_w, GLU, BLOCK_N, AHEAD, LINE_ELEMS, PREFETCH)
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
        scale, scale_up, bias, residual = column_loads(cols, col_ok, s_ptr, b_ptr, r_ptr, N, HAS_SCALE, HAS_BIAS,
                                                       HAS_RESIDUAL, GLU)
        best, best_col = finish_columns(out, out_up, squares, cols, col_ok, scale, scale_up, bias, residual, o_ptr,
                                        K, eps, best, best_col, NORM, HAS_SCALE, HAS_BIAS, HAS_RESIDUAL, GLU, ARGMAX)
    return best, best_col


@triton.jit
def column_loads(cols, col_ok, s_ptr, b_ptr, r_ptr, N, HAS_SCALE: tl.constexpr, HAS_BIAS: tl.constexpr,
                 HAS_RESIDUAL: tl.constexpr, GLU: tl.constexpr):
    """What the epilogue reads of columns `cols`, in float32: scale (and up's under GLU) and bias
    (`scale_and_bias`), residual (.cg: this launch wrote it); zeros where absent."""
    scale, scale_up, bias, _ = scale_and_bias(cols, col_ok, s_ptr, b_ptr, N, HAS_SCALE, HAS_BIAS, GLU)
    residual = tl.zeros(cols.shape, dtype=tl.float32)
    if HAS_RESIDUAL:
        residual = tl.load(r_ptr + cols, mask=col_ok, other=0.0, cache_modifier=".cg").to(tl.float32)
    return scale, scale_up, bias, residual


@triton.jit
def finish_columns(out, out_up, squares, cols, col_ok, scale, scale_up, bias, residual, o_ptr, K, eps, best,
                   best_col, NORM: tl.constexpr, HAS_SCALE: tl.constexpr, HAS_BIAS: tl.constexpr,
                   HAS_RESIDUAL: tl.constexpr, GLU: tl.constexpr, ARGMAX: tl.constexpr):
    """Store columns `cols` of residual + f(out * 1/rms * scale + bias) and fold them into the running argmax."""
    dtype = o_ptr.dtype.element_ty
    if NORM:
        rstd = 1.0 / tl.sqrt(tl.sum(squares, axis=0) / K + eps)
        out = out * rstd
        out_up = out_up * rstd
    if HAS_SCALE:
        out = out * scale
        if GLU:
            out_up = out_up * scale_up
    if HAS_BIAS:
        out += bias
    if GLU:  # as F.silu(gate) * up on the rounded matmul outputs
        gate = out.to(dtype).to(tl.float32)
        out = ((gate * tl.sigmoid(gate)).to(dtype) * out_up.to(dtype)).to(tl.float32)
    if HAS_RESIDUAL:
        out += residual
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


@triton.jit
def round_loads(x_ptr, nw_ptr, w_ptr, r, lo, hi, N, K, stride_w, k_rounds, total, NORM: tl.constexpr,
                GLU: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """Round r's loads (nothing where r >= total): x's chunk (.cg: other SMs wrote it this launch), the
    norm weight's, and the weight tile [BLOCK_N, BLOCK_K] (gate's and up's under GLU)."""
    cols = lo + (r // k_rounds) * BLOCK_N + tl.arange(0, BLOCK_N)
    ks = (r % k_rounds) * BLOCK_K + tl.arange(0, BLOCK_K)
    k_ok = (ks < K) & (r < total)
    a = tl.load(x_ptr + ks, mask=k_ok, other=0.0, cache_modifier=".cg")
    nw = a
    if NORM:
        nw = tl.load(nw_ptr + ks, mask=k_ok, other=0.0)
    wmask = (cols < hi)[:, None] & k_ok[None, :]
    ptrs = w_ptr + cols.to(tl.int64)[:, None] * stride_w + ks[None, :]
    w = tl.load(ptrs, mask=wmask, other=0)
    w_up = w
    if GLU:
        w_up = tl.load(ptrs + N * stride_w, mask=wmask, other=0)
    return a, nw, w, w_up


@triton.jit
def gemv_columns_ahead(x_ptr, nw_ptr, w_ptr, s_ptr, b_ptr, r_ptr, o_ptr, lo, hi, N, K, stride_w, eps,
                       NORM: tl.constexpr, HAS_SCALE: tl.constexpr, HAS_BIAS: tl.constexpr,
                       HAS_RESIDUAL: tl.constexpr, GLU: tl.constexpr, ARGMAX: tl.constexpr, BLOCK_N: tl.constexpr,
                       BLOCK_K: tl.constexpr, AHEAD: tl.constexpr, LINE_ELEMS: tl.constexpr,
                       PREFETCH: tl.constexpr):
    """`gemv_columns` with its (column block, K chunk) rounds in one loop, each round's loads (the epilogue's
    too) issued before the previous round's products are summed: two rounds in flight a program, where the
    other form has one, and no load left between a block's sum and its store."""
    best = tl.full([], float("-inf"), tl.float32)
    best_col = tl.full([], BIG, tl.int32)
    k_rounds = tl.cdiv(K, BLOCK_K)
    total = tl.cdiv(hi - lo, BLOCK_N) * k_rounds
    a, nw, w, w_up = round_loads(x_ptr, nw_ptr, w_ptr, 0, lo, hi, N, K, stride_w, k_rounds, total, NORM, GLU,
                                 BLOCK_N, BLOCK_K)
    cols = lo + tl.arange(0, BLOCK_N)
    scale, scale_up, bias, residual = column_loads(cols, cols < hi, s_ptr, b_ptr, r_ptr, N, HAS_SCALE, HAS_BIAS,
                                                   HAS_RESIDUAL, GLU)
    out = tl.zeros((BLOCK_N,), dtype=tl.float32)
    out_up = tl.zeros((BLOCK_N,), dtype=tl.float32)
    squares = tl.zeros((BLOCK_K,), dtype=tl.float32)
    for r in range(0, total):
        if r % k_rounds == 0:
            l2_ahead(w_ptr, lo + (r // k_rounds) * BLOCK_N, hi, N, K, stride_w, GLU, BLOCK_N, AHEAD, LINE_ELEMS,
                     PREFETCH)
        a_next, nw_next, w_next, w_up_next = round_loads(x_ptr, nw_ptr, w_ptr, r + 1, lo, hi, N, K, stride_w,
                                                         k_rounds, total, NORM, GLU, BLOCK_N, BLOCK_K)
        cols = lo + (r // k_rounds) * BLOCK_N + tl.arange(0, BLOCK_N)
        cols_next = lo + ((r + 1) // k_rounds) * BLOCK_N + tl.arange(0, BLOCK_N)
        # Read before this round's store: a residual block is stored only at its own last round.
        vectors_next = column_loads(cols_next, (cols_next < hi) & (r + 1 < total), s_ptr, b_ptr, r_ptr, N,
                                    HAS_SCALE, HAS_BIAS, HAS_RESIDUAL, GLU)
        if NORM:
            af = a.to(tl.float32)
            squares += af * af
            a = (a * nw).to(a.dtype)
        out += tl.sum(a.to(tl.float32)[None, :] * w.to(tl.float32), axis=1)
        if GLU:
            out_up += tl.sum(a.to(tl.float32)[None, :] * w_up.to(tl.float32), axis=1)
        if r % k_rounds == k_rounds - 1:  # the column block's last chunk
            best, best_col = finish_columns(out, out_up, squares, cols, cols < hi, scale, scale_up, bias, residual,
                                            o_ptr, K, eps, best, best_col, NORM, HAS_SCALE, HAS_BIAS, HAS_RESIDUAL,
                                            GLU, ARGMAX)
            out = tl.zeros((BLOCK_N,), dtype=tl.float32)
            out_up = tl.zeros((BLOCK_N,), dtype=tl.float32)
            squares = tl.zeros((BLOCK_K,), dtype=tl.float32)
        a, nw, w, w_up = a_next, nw_next, w_next, w_up_next
        scale, scale_up, bias, residual = vectors_next
    return best, best_col
