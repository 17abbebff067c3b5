"""The Triton source of `linear_kernel.fused_linear` and of `quant`'s prefill dequantization (Triton resolves
a kernel's helpers among its module's globals, hence a module per family)."""

import triton
import triton.language as tl

from specdraft.engine.triton_common import (let_next_kernel_launch, prefetch_to_l2, scale_and_bias,
                                            wait_for_previous_kernel)
from specdraft.engine.triton_gemv import gemv_loop_ahead, multiply_add


@triton.jit
def load_int4(w_ptr, s_ptr, n, n_ok, k0, K, stride_wn, stride_sn, dtype: tl.constexpr, BLOCK_N: tl.constexpr,
              BLOCK_K: tl.constexpr, GROUP: tl.constexpr):
    """Weight rows n, columns k0.. k0 + BLOCK_K of packed int4, dequantized to `dtype` with
    `quant.dequantize_int4`'s rounding. k0, BLOCK_K and K are multiples of GROUP."""
    pk = k0 // 2 + tl.arange(0, BLOCK_K // 2)
    packed = tl.load(w_ptr + n[:, None] * stride_wn + pk[None, :], mask=n_ok[:, None] & (pk < K // 2)[None, :],
                     other=0x88)  # q = 0 outside the matrix
    low = (packed & 15).to(tl.int8) - 8
    high = (packed >> 4).to(tl.int8) - 8
    q = tl.reshape(tl.join(low, high), (BLOCK_N, BLOCK_K)).to(tl.float32)  # join's last axis: (even, odd)
    g = k0 // GROUP + tl.arange(0, BLOCK_K // GROUP)
    scale = tl.load(s_ptr + n[:, None] * stride_sn + g[None, :], mask=n_ok[:, None] & (g < K // GROUP)[None, :],
                    other=0.0).to(tl.float32)
    w = tl.reshape(q, (BLOCK_N, BLOCK_K // GROUP, GROUP)) * scale[:, :, None]
    return tl.reshape(w, (BLOCK_N, BLOCK_K)).to(dtype)


@triton.jit
def epilogue_loads(rows, cols, row_ok, col_ok, N, s_ptr, b_ptr, r_ptr, stride_rm, HAS_SCALE: tl.constexpr,
                   HAS_BIAS: tl.constexpr, HAS_RESIDUAL: tl.constexpr, GLU: tl.constexpr):
    """What the epilogue reads: scale and bias (`scale_and_bias`) and the residual tile [BLOCK_M, BLOCK_N] as
    stored (zeros where absent)."""
    scale, scale_up, bias, bias_up = scale_and_bias(cols, col_ok, s_ptr, b_ptr, N, HAS_SCALE, HAS_BIAS, GLU)
    residual = tl.zeros((rows.shape[0], cols.shape[0]), dtype=r_ptr.dtype.element_ty)
    if HAS_RESIDUAL:
        residual = tl.load(r_ptr + rows[:, None] * stride_rm + cols[None, :], mask=row_ok[:, None] & col_ok[None, :],
                           other=0.0)
    return scale, scale_up, bias, bias_up, residual


@triton.jit
def finish(acc, acc_up, squares, rows, cols, row_ok, col_ok, N, K, eps, s_ptr, b_ptr, r_ptr, o_ptr, stride_rm,
           stride_om, epilogue_inputs, HAS_SCALE: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_RESIDUAL: tl.constexpr,
           NORM: tl.constexpr, GLU: tl.constexpr, EARLY_EPILOGUE: tl.constexpr):
    """The epilogue: 1/rms, scale, bias, SiLU(gate) * up (rounded first, as the reference's matmul output
    is), residual add, store. EARLY_EPILOGUE: `epilogue_inputs` holds what `epilogue_loads` read before the loop;
    otherwise they are read here, after the norm."""
    out_mask = row_ok[:, None] & col_ok[None, :]
    if NORM:
        rstd = 1.0 / tl.sqrt(squares / K + eps)
        acc = acc * rstd[:, None]
        if GLU:
            acc_up = acc_up * rstd[:, None]
    if not EARLY_EPILOGUE:
        epilogue_inputs = epilogue_loads(rows, cols, row_ok, col_ok, N, s_ptr, b_ptr, r_ptr, stride_rm, HAS_SCALE,
                                         HAS_BIAS, HAS_RESIDUAL, GLU)
    scale, scale_up, bias, bias_up, residual = epilogue_inputs
    if HAS_SCALE:
        acc = acc * scale[None, :]
        if GLU:
            acc_up = acc_up * scale_up[None, :]
    if HAS_BIAS:
        acc += bias[None, :]
        if GLU:
            acc_up += bias_up[None, :]
    if GLU:  # as F.silu(gate) * up on the rounded matmul outputs
        gate = acc.to(o_ptr.dtype.element_ty).to(tl.float32)
        up = acc_up.to(o_ptr.dtype.element_ty)
        acc = ((gate * tl.sigmoid(gate)).to(o_ptr.dtype.element_ty) * up).to(tl.float32)
    if HAS_RESIDUAL:
        acc += residual.to(tl.float32)
    tl.store(o_ptr + rows[:, None] * stride_om + cols[None, :], acc.to(o_ptr.dtype.element_ty), mask=out_mask)


@triton.jit(do_not_specialize=["M"])
def linear_kernel(x_ptr, w_ptr, s_ptr, b_ptr, r_ptr, nw_ptr, sq_ptr, o_ptr, ws_ptr, ss_ptr, cnt_ptr, M, M_PAD, N,
                  K, K_PER_SPLIT, stride_xm, stride_wn, stride_sn, stride_rm, stride_om, eps, HAS_SCALE: tl.constexpr,
                  HAS_BIAS: tl.constexpr, HAS_RESIDUAL: tl.constexpr, NORM: tl.constexpr, GLU: tl.constexpr,
                  SPLIT_K: tl.constexpr, INT4: tl.constexpr, GROUP: tl.constexpr, IEEE: tl.constexpr,
                  DOT: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                  SWAP: tl.constexpr = False, PDL: tl.constexpr = False, PREFETCH_LINES: tl.constexpr = 1,
                  LINE_ELEMS: tl.constexpr = 64, SUM_AFTER: tl.constexpr = False, FAST_INT8: tl.constexpr = False,
                  NORM_INSIDE: tl.constexpr = True, EARLY_EPILOGUE: tl.constexpr = False,
                  LOADS_AHEAD: tl.constexpr = False):
    """Program (n, k, m): output columns n * BLOCK_N.. of rows m * BLOCK_M.. over the k-th of SPLIT_K slices
    of K (M_PAD: the rows of all row blocks, the partials' stride). NORM: 1/rms in the epilogue; NORM_INSIDE
    scales x by the norm weight and gathers the sum of squares from the same tiles, so no pass over the row
    precedes the weight loads; otherwise x comes scaled and its sums of squares in sq_ptr (`norm_prepass_kernel`).
    Under PDL the start of the weight rows is prefetched into L2 before waiting for the previous kernel.
    EARLY_EPILOGUE: scale, bias and residual read before the loop, not after it on the way to the store.
    LOADS_AHEAD (GEMV of int8 or floating weights): each round's tiles loaded a round early (`gemv_loop_ahead`)."""
    pid_n, pid_k, pid_m = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs = tl.arange(0, BLOCK_K)
    row_ok, col_ok = rows < M, cols < N
    if PDL:  # the weights: no earlier kernel writes them
        stored_k = K // 2 if INT4 else K  # int4 packs two values a byte
        first = (pid_k * K_PER_SPLIT) // (2 if INT4 else 1) + tl.arange(0, PREFETCH_LINES) * LINE_ELEMS
        line_ok = col_ok[:, None] & (first < stored_k)[None, :]
        prefetch_to_l2(w_ptr + cols[:, None] * stride_wn + first[None, :], line_ok, PDL)
        if GLU:
            prefetch_to_l2(w_ptr + (N + cols)[:, None] * stride_wn + first[None, :], line_ok, PDL)
    wait_for_previous_kernel(PDL)
    epilogue_inputs = 0  # what the epilogue reads: read here (EARLY_EPILOGUE), else `finish` reads it
    if EARLY_EPILOGUE:
        epilogue_inputs = epilogue_loads(rows, cols, row_ok, col_ok, N, s_ptr, b_ptr, r_ptr, stride_rm, HAS_SCALE,
                                         HAS_BIAS, HAS_RESIDUAL, GLU)
    if not DOT and SUM_AFTER:  # BLOCK_M = 1: products kept per column of K, reduced once after the loop
        acc = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32)
        acc_up = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32)
    elif SWAP:
        acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
        acc_up = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
    else:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        acc_up = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    squares_tile = tl.zeros((BLOCK_M, BLOCK_K), dtype=tl.float32)  # summed over K once, after the loop
    k_start = pid_k * K_PER_SPLIT
    if LOADS_AHEAD:
        acc, acc_up, squares_tile = gemv_loop_ahead(x_ptr, w_ptr, nw_ptr, rows, cols, row_ok, col_ok, offs, k_start,
                                                    K_PER_SPLIT, K, N, stride_xm, stride_wn, acc, acc_up,
                                                    squares_tile, NORM and NORM_INSIDE, GLU, IEEE, SUM_AFTER,
                                                    FAST_INT8, BLOCK_K)
    else:
        for k0 in range(k_start, k_start + K_PER_SPLIT, BLOCK_K):
            ks = k0 + offs
            k_ok = ks < K
            a = tl.load(x_ptr + rows[:, None] * stride_xm + ks[None, :], mask=row_ok[:, None] & k_ok[None, :],
                        other=0.0)
            if NORM and NORM_INSIDE:
                af = a.to(tl.float32)
                squares_tile += af * af  # element-wise: no reduction across threads inside the loop
                a = (a * tl.load(nw_ptr + ks, mask=k_ok, other=0.0)[None, :]).to(a.dtype)
            if INT4:
                w = load_int4(w_ptr, s_ptr, cols, col_ok, k0, K, stride_wn, stride_sn, a.dtype, BLOCK_N, BLOCK_K, GROUP)
            else:
                w = tl.load(w_ptr + cols[:, None] * stride_wn + ks[None, :], mask=col_ok[:, None] & k_ok[None, :],
                            other=0)
            acc = multiply_add(acc, a, w, DOT, IEEE, SWAP, SUM_AFTER, FAST_INT8)
            if GLU:
                if INT4:
                    w_up = load_int4(w_ptr, s_ptr, N + cols, col_ok, k0, K, stride_wn, stride_sn, a.dtype, BLOCK_N,
                                     BLOCK_K, GROUP)
                else:
                    w_up = tl.load(w_ptr + (N + cols)[:, None] * stride_wn + ks[None, :],
                                   mask=col_ok[:, None] & k_ok[None, :], other=0)
                acc_up = multiply_add(acc_up, a, w_up, DOT, IEEE, SWAP, SUM_AFTER, FAST_INT8)
    let_next_kernel_launch(PDL)
    if not DOT and SUM_AFTER:
        acc = tl.sum(acc, axis=1)[None, :]
        acc_up = tl.sum(acc_up, axis=1)[None, :]
    elif SWAP:
        acc = tl.trans(acc)
        acc_up = tl.trans(acc_up)
    if NORM and not NORM_INSIDE:
        squares = tl.load(sq_ptr + rows, mask=row_ok, other=0.0)
    else:
        squares = tl.sum(squares_tile, axis=1)
    if SPLIT_K > 1:  # float32 partials; the column block's last program to finish sums them
        out_mask = row_ok[:, None] & col_ok[None, :]
        part = ws_ptr + pid_k * (1 + GLU) * M_PAD * N + rows[:, None] * N + cols[None, :]
        tl.store(part, acc, mask=out_mask)
        if GLU:
            tl.store(part + M_PAD * N, acc_up, mask=out_mask)
        if NORM and NORM_INSIDE:  # each column block keeps its own copy: its last program reads no other block's
            tl.store(ss_ptr + (pid_n * SPLIT_K + pid_k) * M_PAD + rows, squares, mask=row_ok)
        tl.debug_barrier()  # every thread's partials stored before the count says so
        count = cnt_ptr + pid_m * tl.num_programs(0) + pid_n
        if tl.atomic_add(count, 1, sem="acq_rel") == SPLIT_K - 1:
            acc, acc_up, summed = sum_splits(ws_ptr, ss_ptr, pid_n, rows, cols, row_ok, out_mask, M_PAD, N, GLU,
                                             NORM and NORM_INSIDE, SPLIT_K, BLOCK_M, BLOCK_N)
            if NORM_INSIDE:
                squares = summed
            finish(acc, acc_up, squares, rows, cols, row_ok, col_ok, N, K, eps, s_ptr, b_ptr, r_ptr, o_ptr,
                   stride_rm, stride_om, epilogue_inputs, HAS_SCALE, HAS_BIAS, HAS_RESIDUAL, NORM, GLU, EARLY_EPILOGUE)
            tl.atomic_xchg(count, 0)  # ready for the next launch (a graph replays the same buffer)
    else:
        finish(acc, acc_up, squares, rows, cols, row_ok, col_ok, N, K, eps, s_ptr, b_ptr, r_ptr, o_ptr, stride_rm,
               stride_om, epilogue_inputs, HAS_SCALE, HAS_BIAS, HAS_RESIDUAL, NORM, GLU, EARLY_EPILOGUE)


@triton.jit
def norm_prepass_kernel(x_ptr, nw_ptr, xn_ptr, sq_ptr, K, stride_xm, BLOCK_K: tl.constexpr, PDL: tl.constexpr = False):
    """Program m: row m of x scaled by the norm weight into xn [M, K], rounded as `linear_kernel` rounds it
    inside, and its sum of squares into sq [M] (float32), for a matmul that applies 1/rms in its epilogue."""
    m = tl.program_id(0)
    offs = tl.arange(0, BLOCK_K)
    wait_for_previous_kernel(PDL)
    let_next_kernel_launch(PDL)  # a few programs: the matmul's take the other SMs and prefetch their weights
    squares_tile = tl.zeros((BLOCK_K,), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        ks = k0 + offs
        k_ok = ks < K
        a = tl.load(x_ptr + m * stride_xm + ks, mask=k_ok, other=0.0)
        af = a.to(tl.float32)
        squares_tile += af * af
        tl.store(xn_ptr + m * K + ks, (a * tl.load(nw_ptr + ks, mask=k_ok, other=0.0)).to(a.dtype), mask=k_ok)
    tl.store(sq_ptr + m, tl.sum(squares_tile, axis=0))


@triton.jit
def sum_splits(ws_ptr, ss_ptr, pid_n, rows, cols, row_ok, mask, M_PAD, N, GLU: tl.constexpr, NORM: tl.constexpr,
               SPLIT_K: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """A column block's SPLIT_K partials summed in split order: the same sum whichever program finished last.
    Read with .cg: other SMs wrote them."""
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    acc_up = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    squares = tl.zeros((BLOCK_M,), dtype=tl.float32)
    for split in range(SPLIT_K):
        part = ws_ptr + split * (1 + GLU) * M_PAD * N + rows[:, None] * N + cols[None, :]
        acc += tl.load(part, mask=mask, other=0.0, cache_modifier=".cg")
        if GLU:
            acc_up += tl.load(part + M_PAD * N, mask=mask, other=0.0, cache_modifier=".cg")
        if NORM:
            squares += tl.load(ss_ptr + (pid_n * SPLIT_K + split) * M_PAD + rows, mask=row_ok, other=0.0,
                               cache_modifier=".cg")
    return acc, acc_up, squares


@triton.jit
def dequantize_kernel(w_ptr, s_ptr, o_ptr, N, K, stride_wn, stride_sn, INT4: tl.constexpr, GROUP: tl.constexpr,
                      BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """Program (n, k): a tile of an int8 or packed int4 weight dequantized into o [N, K] with
    `quant.dequantize`'s rounding."""
    n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    k0 = tl.program_id(1) * BLOCK_K
    ks = k0 + tl.arange(0, BLOCK_K)
    n_ok = n < N
    mask = n_ok[:, None] & (ks < K)[None, :]
    if INT4:
        w = load_int4(w_ptr, s_ptr, n, n_ok, k0, K, stride_wn, stride_sn, o_ptr.dtype.element_ty, BLOCK_N, BLOCK_K,
                      GROUP)
    else:
        q = tl.load(w_ptr + n[:, None] * stride_wn + ks[None, :], mask=mask, other=0).to(tl.float32)
        s = tl.load(s_ptr + n, mask=n_ok, other=0.0).to(o_ptr.dtype.element_ty).to(tl.float32)
        w = (q * s[:, None]).to(o_ptr.dtype.element_ty)
    tl.store(o_ptr + n[:, None] * K + ks[None, :], w, mask=mask)
