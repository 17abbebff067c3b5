"""The Triton source of `fused_step`: a whole one-token decoder step (every layer, then the lm-head and its
argmax) as one persistent kernel. Each layer is five phases: A qkv, B RoPE + cache write + split-KV
attention, C o + residual, D gate/up + SiLU * up, E down + residual; the lm-head is the last. With BARRIER
the programs (one per SM, all resident) meet at a grid barrier between phases; without it the host launches
one phase per launch (the interpreter's way, and the reference the barrier is checked against)."""

import triton
import triton.language as tl

from specdraft.engine.triton_fused_attention import attention_item
from specdraft.engine.triton_fused_gemv import BIG, gemv_columns, prefetch_rows


@triton.jit
def grid_barrier(cnt_ptr, target):
    """Every program's writes before it visible to every program after it (target: arrivals so far)."""
    tl.debug_barrier()
    tl.atomic_add(cnt_ptr, 1, sem="release", scope="gpu")
    while tl.atomic_add(cnt_ptr, 0, sem="acquire", scope="gpu") < target:
        pass
    tl.debug_barrier()


@triton.jit
def split_range(pid, n, P):
    """Program pid's share lo..hi-1 of n columns: contiguous, sizes within one of each other."""
    return pid * n // P, (pid + 1) * n // P


@triton.jit(do_not_specialize=["start_step", "stop_step", "split_cols", "col_offset"])
def fused_step_kernel(ids_ptr, col_ptr, pad_ptr, embed_ptr, cos_ptr, sin_ptr, qkv_w, qkv_s, qkv_b, o_w, o_s, gu_w,
                      gu_s, dn_w, dn_s, in_norm, post_norm, qk_norm, lm_w, lm_s, final_norm, k_ptr, v_ptr, x_ptr,
                      qkv_ptr, attn_ptr, act_ptr, acc_ws, ml_ws, best_ws, logits_ptr, next_ptr, cnt_ptr,
                      start_step, stop_step, split_cols, col_offset, NUM_LAYERS, H, NH, NKV, HD, I, V, GROUP,
                      stride_layer_qkv, stride_layer_o, stride_layer_gu, stride_layer_dn, stride_layer_k, stride_kh,
                      stride_ks, eps, sm_scale, HAS_SCALE: tl.constexpr, HAS_BIAS: tl.constexpr,
                      QK_NORM: tl.constexpr, BARRIER: tl.constexpr, PREFETCH: tl.constexpr, IEEE: tl.constexpr,
                      NSPLIT: tl.constexpr, SPLITS_P2: tl.constexpr, BN_QKV: tl.constexpr, BN_O: tl.constexpr,
                      BN_GU: tl.constexpr, BN_DN: tl.constexpr, BN_LM: tl.constexpr, BK_H: tl.constexpr, BK_O: tl.constexpr,
                      BK_I: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_S: tl.constexpr,
                      LINE_ELEMS: tl.constexpr, PREFETCH_CAP: tl.constexpr, HEAD_AHEAD: tl.constexpr,
                      PHASES: tl.constexpr, LOADS_AHEAD: tl.constexpr):
    """Steps start_step..stop_step-1 (layer step // PHASES, phase step % PHASES) of the token ids[0] at column
    col[0] + col_offset (row start pad[0]); step PHASES * NUM_LAYERS, the lm-head, writes logits [V] and their
    argmax into next[0]. x [H]: the residual. Matrices are contiguous rows, [NUM_LAYERS, N, K] with layer
    strides stride_layer_*. LOADS_AHEAD: bit i set, the GEMV of fused_step.MATRICES[i] loads a round ahead."""
    pid = tl.program_id(0)
    P = tl.num_programs(0)
    start = tl.load(col_ptr) + col_offset
    pad = tl.load(pad_ptr)
    row = embed_ptr + tl.load(ids_ptr) * H
    cos_row = cos_ptr + (start - pad) * HD
    sin_row = sin_ptr + (start - pad) * HD
    NQKV = (NH + 2 * NKV) * HD
    h_lines = tl.cdiv(H, LINE_ELEMS)
    o_lo, o_hi = split_range(pid, H, P)  # o and down write the same residual columns
    for step in range(start_step, stop_step):
        layer = step // PHASES
        phase = step % PHASES
        lw = layer.to(tl.int64)
        if step == PHASES * NUM_LAYERS:  # the lm-head, its argmax reduced by the last program to finish
            lo, hi = split_range(pid, V, P)
            best, best_col = gemv_columns(x_ptr, final_norm, lm_w, lm_s, qkv_b, x_ptr, logits_ptr, lo, hi, V, H, H,
                                          eps, True, HAS_SCALE, False, False, False, True, BN_LM, BK_H, HEAD_AHEAD,
                                          LINE_ELEMS, PREFETCH, (LOADS_AHEAD & 16) != 0)
            tl.store(best_ws + pid, best)
            tl.store(best_ws + P + pid, best_col.to(tl.float32))  # < 2**24 (the host checks V): exact
            tl.debug_barrier()
            if tl.atomic_add(cnt_ptr + 2, 1, sem="acq_rel", scope="gpu") == P - 1:
                p = tl.arange(0, 1024)
                values = tl.load(best_ws + p, mask=p < P, other=-float("inf"), cache_modifier=".cg")
                columns = tl.load(best_ws + P + p, mask=p < P, other=BIG, cache_modifier=".cg")
                top = tl.max(values, axis=0)
                tl.store(next_ptr, tl.min(tl.where(values == top, columns, BIG), axis=0).to(tl.int64))
                tl.atomic_xchg(cnt_ptr + 2, 0)
        elif phase == 0:  # A: norm + qkv (+ bias); the weights of C and D asked for in L2
            prefetch_rows(o_w + lw * stride_layer_o, o_lo, o_hi, NH * HD, tl.cdiv(NH * HD, LINE_ELEMS), LINE_ELEMS,
                          PREFETCH_CAP, PREFETCH)
            g_lo, g_hi = split_range(pid, I, P)
            prefetch_rows(gu_w + lw * stride_layer_gu, g_lo, g_hi, H, h_lines, LINE_ELEMS, PREFETCH_CAP, PREFETCH)
            prefetch_rows(gu_w + lw * stride_layer_gu + I * H, g_lo, g_hi, H, h_lines, LINE_ELEMS, PREFETCH_CAP,
                          PREFETCH)
            x_in = x_ptr
            if layer == 0:  # the residual starts as the embedding row: this program's share of it
                x_in = row
                for c0 in range(o_lo, o_hi, BK_H):
                    offs = c0 + tl.arange(0, BK_H)
                    tl.store(x_ptr + offs, tl.load(row + offs, mask=offs < o_hi), mask=offs < o_hi)
            lo, hi = split_range(pid, NQKV, P)
            gemv_columns(x_in, in_norm + layer * H, qkv_w + lw * stride_layer_qkv, qkv_s + layer * NQKV,
                         qkv_b + layer * NQKV, x_ptr, qkv_ptr, lo, hi, NQKV, H, H, eps, True, HAS_SCALE, HAS_BIAS,
                         False, False, False, BN_QKV, BK_H, 0, LINE_ELEMS, PREFETCH, (LOADS_AHEAD & 1) != 0)
        elif phase == 1:  # B: RoPE, cache write and split-KV attention; down's weights asked for
            prefetch_rows(dn_w + lw * stride_layer_dn, o_lo, o_hi, I, tl.cdiv(I, LINE_ELEMS), LINE_ELEMS,
                          PREFETCH_CAP, PREFETCH)
            for item in range(pid, NKV * NSPLIT, P):
                attention_item(qkv_ptr, qk_norm + layer * (NH + NKV) * HD, cos_row, sin_row,
                               k_ptr + lw * stride_layer_k, v_ptr + lw * stride_layer_k, attn_ptr, acc_ws, ml_ws,
                               cnt_ptr + 3, item, start, pad, split_cols, NH, NKV, HD, GROUP, stride_kh, stride_ks,
                               eps, sm_scale, QK_NORM, IEEE, NSPLIT, SPLITS_P2, BLOCK_G, BLOCK_D, BLOCK_S)
        elif phase == 2:  # C: o + residual
            gemv_columns(attn_ptr, in_norm, o_w + lw * stride_layer_o, o_s + layer * H, qkv_b, x_ptr, x_ptr, o_lo,
                         o_hi, H, NH * HD, NH * HD, eps, False, HAS_SCALE, False, True, False, False, BN_O, BK_O, 0,
                         LINE_ELEMS, PREFETCH, (LOADS_AHEAD & 2) != 0)
        elif phase == 3:  # D: norm + gate/up, SiLU(gate) * up; the next layer's qkv (or the lm-head) asked for
            if layer + 1 < NUM_LAYERS:
                q_lo, q_hi = split_range(pid, NQKV, P)
                prefetch_rows(qkv_w + (lw + 1) * stride_layer_qkv, q_lo, q_hi, H, h_lines, LINE_ELEMS, PREFETCH_CAP,
                              PREFETCH)
            else:
                v_lo, v_hi = split_range(pid, V, P)
                prefetch_rows(lm_w, v_lo, v_hi, H, h_lines, LINE_ELEMS, PREFETCH_CAP, PREFETCH)
            lo, hi = split_range(pid, I, P)
            gemv_columns(x_ptr, post_norm + layer * H, gu_w + lw * stride_layer_gu, gu_s + layer * 2 * I, qkv_b,
                         x_ptr, act_ptr, lo, hi, I, H, H, eps, True, HAS_SCALE, False, False, True, False, BN_GU, BK_H,
                         0, LINE_ELEMS, PREFETCH, (LOADS_AHEAD & 4) != 0)
        else:  # E: down + residual
            gemv_columns(act_ptr, in_norm, dn_w + lw * stride_layer_dn, dn_s + layer * H, qkv_b, x_ptr, x_ptr, o_lo,
                         o_hi, H, I, I, eps, False, HAS_SCALE, False, True, False, False, BN_DN, BK_I, 0, LINE_ELEMS,
                         PREFETCH, (LOADS_AHEAD & 8) != 0)
        if BARRIER:
            if step + 1 < stop_step:
                grid_barrier(cnt_ptr, (step - start_step + 1) * P)
    if BARRIER:  # the last program out resets the barrier for the next launch
        if tl.atomic_add(cnt_ptr + 1, 1, sem="acq_rel", scope="gpu") == P - 1:
            tl.atomic_xchg(cnt_ptr, 0)
            tl.atomic_xchg(cnt_ptr + 1, 0)
