"""The Triton source of `attention.decode_attention`: split-KV (flash-decoding) attention, the splits combined
by the last program of each (batch row, KV head) to finish."""

import triton
import triton.language as tl

from specdraft.engine.triton_common import dot, let_next_kernel_launch, wait_for_previous_kernel

LOG2E = tl.constexpr(1.4426950408889634)  # softmax in base 2: exp(x) = exp2(x * log2(e))


@triton.jit
def qk_scores(q, k, IEEE: tl.constexpr):
    """q [R, D] @ k.T in float32 (IEEE: exact float32 products, as the float32 engines need)."""
    return dot(q, tl.trans(k), None, IEEE)


@triton.jit
def online_softmax_update(s, v, m_i, l_i, acc, IEEE: tl.constexpr):
    """One key block's base-2 scores s [R, N] (masked: -inf) and values v [N, D] folded into the running max
    m_i, sum l_i and accumulator acc; returns the three updated."""
    m_new = tl.maximum(m_i, tl.max(s, axis=1))
    # A row with every column so far masked keeps m = -inf: shift by 0 so that exp2 gives 0, not NaN.
    m_shift = tl.where(m_new == float("-inf"), 0.0, m_new)
    alpha = tl.exp2(m_i - m_shift)
    p = tl.exp2(s - m_shift[:, None])
    l_i = l_i * alpha + tl.sum(p, axis=1)
    acc = acc * alpha[:, None]
    return m_new, l_i, dot(p.to(v.dtype), v, acc, IEEE)


@triton.jit(do_not_specialize=["R", "KV_LEN", "BLOCKS_PER_SPLIT"])
def decode_attention_kernel(q_ptr, k_ptr, v_ptr, mask_ptr, o_ptr, acc_ws_ptr, ml_ws_ptr, cnt_ptr, R, KV_LEN, NKV, HD,
                            BLOCKS_PER_SPLIT, sm_scale, stride_qb, stride_qh, stride_qr, stride_kb, stride_kh,
                            stride_ks, stride_vb, stride_vh, stride_vs, stride_mb, stride_mr, stride_mn,
                            PARTIAL: tl.constexpr, IEEE: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_N: tl.constexpr,
                            BLOCK_D: tl.constexpr, PDL: tl.constexpr = False):
    """Program (b * NKV + h, split): KV head h's R query rows over the split-th run of key blocks, an online
    softmax. PARTIAL: float32 partials go to the workspaces and the last program to finish combines them."""
    wait_for_previous_kernel(PDL)
    bh, split = tl.program_id(0), tl.program_id(1)
    b, h = bh // NKV, bh % NKV
    rows = tl.arange(0, BLOCK_R)
    d = tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    row_ok, d_ok = rows < R, d < HD
    q = tl.load(q_ptr + b * stride_qb + h * stride_qh + rows[:, None] * stride_qr + d[None, :],
                mask=row_ok[:, None] & d_ok[None, :], other=0.0)
    k_base = k_ptr + b * stride_kb + h * stride_kh
    v_base = v_ptr + b * stride_vb + h * stride_vh
    mask_base = mask_ptr + b * stride_mb + rows[:, None] * stride_mr
    m_i = tl.full((BLOCK_R,), float("-inf"), dtype=tl.float32)  # running max of each row's scores (base 2)
    l_i = tl.zeros((BLOCK_R,), dtype=tl.float32)  # running sum of exp2(score - m_i)
    acc = tl.zeros((BLOCK_R, BLOCK_D), dtype=tl.float32)
    start = split * BLOCKS_PER_SPLIT * BLOCK_N
    for n0 in range(start, start + BLOCKS_PER_SPLIT * BLOCK_N, BLOCK_N):
        cols = n0 + offs_n
        col_ok = cols < KV_LEN  # the last split may run past the attended columns: masked, nothing read
        kv_mask = col_ok[:, None] & d_ok[None, :]
        k = tl.load(k_base + cols[:, None] * stride_ks + d[None, :], mask=kv_mask, other=0.0)
        bias = tl.load(mask_base + cols[None, :] * stride_mn, mask=row_ok[:, None] & col_ok[None, :],
                       other=float("-inf")).to(tl.float32)
        s = (qk_scores(q, k, IEEE) * sm_scale + bias) * LOG2E  # [BLOCK_R, BLOCK_N]
        v = tl.load(v_base + cols[:, None] * stride_vs + d[None, :], mask=kv_mask, other=0.0)
        m_i, l_i, acc = online_softmax_update(s, v, m_i, l_i, acc, IEEE)
    let_next_kernel_launch(PDL)
    out_mask = row_ok[:, None] & d_ok[None, :]
    if PARTIAL:
        num_splits = tl.num_programs(1)
        tl.store(acc_ws_ptr + ((bh * num_splits + split) * R + rows[:, None]) * HD + d[None, :], acc, mask=out_mask)
        ml = ml_ws_ptr + (bh * num_splits + split) * 2 * R + rows
        tl.store(ml, m_i, mask=row_ok)
        tl.store(ml + R, l_i, mask=row_ok)
        tl.debug_barrier()  # every thread's partials stored before the count says so
        if tl.atomic_add(cnt_ptr + bh, 1, sem="acq_rel") == num_splits - 1:
            combine_splits(acc_ws_ptr, ml_ws_ptr, o_ptr, bh, rows, d, row_ok, out_mask, R, HD, num_splits, BLOCK_R,
                           BLOCK_D)
            tl.atomic_xchg(cnt_ptr + bh, 0)  # ready for the next launch (a graph replays the same buffer)
    else:
        out = acc / tl.where(l_i == 0.0, 1.0, l_i)[:, None]  # l = 0 only on padding rows (not stored)
        tl.store(o_ptr + (bh * R + rows[:, None]) * HD + d[None, :], out.to(o_ptr.dtype.element_ty), mask=out_mask)


@triton.jit
def combine_splits(acc_ws_ptr, ml_ws_ptr, o_ptr, bh, rows, d, row_ok, mask, R, HD, NUM_SPLITS,
                   BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr):
    """The splits' partials rescaled to their common max and summed in split order (the same sum whichever
    program finished last), then normalised. Read with .cg: other SMs wrote them."""
    m = tl.full((BLOCK_R,), float("-inf"), dtype=tl.float32)
    for split in range(NUM_SPLITS):
        m = tl.maximum(m, tl.load(ml_ws_ptr + (bh * NUM_SPLITS + split) * 2 * R + rows, mask=row_ok,
                                  other=float("-inf"), cache_modifier=".cg"))
    m = tl.where(m == float("-inf"), 0.0, m)  # padding rows only: every real row sees its own column
    l = tl.zeros((BLOCK_R,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_R, BLOCK_D), dtype=tl.float32)
    for split in range(NUM_SPLITS):
        ml = ml_ws_ptr + (bh * NUM_SPLITS + split) * 2 * R + rows
        weight = tl.exp2(tl.load(ml, mask=row_ok, other=float("-inf"), cache_modifier=".cg") - m)
        l += tl.load(ml + R, mask=row_ok, other=0.0, cache_modifier=".cg") * weight
        part = tl.load(acc_ws_ptr + ((bh * NUM_SPLITS + split) * R + rows[:, None]) * HD + d[None, :], mask=mask,
                       other=0.0, cache_modifier=".cg")
        acc += part * weight[:, None]
    out = acc / tl.where(l == 0.0, 1.0, l)[:, None]
    tl.store(o_ptr + (bh * R + rows[:, None]) * HD + d[None, :], out.to(o_ptr.dtype.element_ty), mask=mask)
