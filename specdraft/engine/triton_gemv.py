"""The multiply-adds of `triton_linear.linear_kernel`'s K loop (tensor cores or a GEMV, int8 converted by
integer ops) and its GEMV loop with each round's loads a round ahead."""

import triton
import triton.language as tl

from specdraft.engine.triton_common import dot


@triton.jit
def multiply_add(acc, a, w, DOT: tl.constexpr, IEEE: tl.constexpr, SWAP: tl.constexpr, SUM_AFTER: tl.constexpr,
                 FAST_INT8: tl.constexpr):
    """acc [BLOCK_M, BLOCK_N] + a [BLOCK_M, BLOCK_K] @ w [BLOCK_N, BLOCK_K].T: tensor cores (DOT), or a GEMV.
    SWAP: acc is [BLOCK_N, BLOCK_M], w @ a.T, so that the weight converted in registers is the MMA's first
    operand, which Hopper's wgmma may take from registers (its second comes from shared memory).
    SUM_AFTER (GEMV, BLOCK_M = 1): acc is [BLOCK_N, BLOCK_K] of products, summed over K after the loop, not
    across threads every round. FAST_INT8: see `int8_to_float32`."""
    if DOT and SWAP:
        acc = dot(w.to(a.dtype), tl.trans(a), acc, IEEE)
    elif DOT:
        acc = dot(a, tl.trans(w.to(a.dtype)), acc, IEEE)
    elif SUM_AFTER:
        acc += a.to(tl.float32) * int8_to_float32(w, FAST_INT8)
    else:
        acc += tl.sum(a.to(tl.float32)[:, None, :] * int8_to_float32(w, FAST_INT8)[None, :, :], axis=2)
    return acc


@triton.jit
def int8_to_float32(w, FAST_INT8: tl.constexpr):
    """w as float32. FAST_INT8: int8 through integer ops and one float add (2**23 + (w + 128) built in the
    mantissa) instead of the conversion instruction."""
    if FAST_INT8 and w.dtype == tl.int8:
        biased = (w.to(tl.uint8, bitcast=True).to(tl.int32) ^ 0x80) | 0x4B000000
        return biased.to(tl.float32, bitcast=True) - 8388736.0  # exact: 2**23 + 128
    else:
        return w.to(tl.float32)


@triton.jit
def gemv_round_loads(x_ptr, w_ptr, nw_ptr, rows, cols, row_ok, col_ok, ks, k_ok, N, stride_xm, stride_wn,
                     NORM: tl.constexpr, GLU: tl.constexpr):
    """One GEMV round's loads: x [1, BLOCK_K], the norm weight's chunk, the weight tile (gate's and up's)."""
    a = tl.load(x_ptr + rows[:, None] * stride_xm + ks[None, :], mask=row_ok[:, None] & k_ok[None, :], other=0.0)
    nw = a
    if NORM:
        nw = tl.load(nw_ptr + ks, mask=k_ok, other=0.0)[None, :]
    w = tl.load(w_ptr + cols[:, None] * stride_wn + ks[None, :], mask=col_ok[:, None] & k_ok[None, :], other=0)
    w_up = w
    if GLU:
        w_up = tl.load(w_ptr + (N + cols)[:, None] * stride_wn + ks[None, :], mask=col_ok[:, None] & k_ok[None, :],
                       other=0)
    return a, nw, w, w_up


@triton.jit
def gemv_loop_ahead(x_ptr, w_ptr, nw_ptr, rows, cols, row_ok, col_ok, offs, k_start, K_PER_SPLIT, K, N, stride_xm,
                    stride_wn, acc, acc_up, squares_tile, NORM: tl.constexpr, GLU: tl.constexpr,
                    IEEE: tl.constexpr, SUM_AFTER: tl.constexpr, FAST_INT8: tl.constexpr, BLOCK_K: tl.constexpr):
    """`linear_kernel`'s GEMV loop with each round's loads issued before the previous round's products: two
    rounds in flight a warp where the plain loop, which Triton does not pipeline, has one."""
    k_stop = tl.minimum(k_start + K_PER_SPLIT, K)
    a, nw, w, w_up = gemv_round_loads(x_ptr, w_ptr, nw_ptr, rows, cols, row_ok, col_ok, k_start + offs,
                                      k_start + offs < k_stop, N, stride_xm, stride_wn, NORM, GLU)
    for k0 in range(k_start, k_start + K_PER_SPLIT, BLOCK_K):
        ks = k0 + BLOCK_K + offs
        a_next, nw_next, w_next, w_up_next = gemv_round_loads(x_ptr, w_ptr, nw_ptr, rows, cols, row_ok, col_ok, ks,
                                                              ks < k_stop, N, stride_xm, stride_wn, NORM, GLU)
        if NORM:
            af = a.to(tl.float32)
            squares_tile += af * af
            a = (a * nw).to(a.dtype)
        acc = multiply_add(acc, a, w, False, IEEE, False, SUM_AFTER, FAST_INT8)
        if GLU:
            acc_up = multiply_add(acc_up, a, w_up, False, IEEE, False, SUM_AFTER, FAST_INT8)
        a, nw, w, w_up = a_next, nw_next, w_next, w_up_next
    return acc, acc_up, squares_tile
