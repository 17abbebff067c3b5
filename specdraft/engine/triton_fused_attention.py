"""The attention of `triton_fused_step`: one KV head's query heads over one split of the keys, RoPE (and
Qwen3's per-head norm) applied in registers, this token's key and value written to the cache, the splits
combined by the last to finish."""

import triton
import triton.language as tl

from specdraft.engine.triton_attention import LOG2E, online_softmax_update, qk_scores


@triton.jit
def rope_heads(qkv_ptr, qn_ptr, cos_ptr, sin_ptr, heads, head_ok, d, HD, eps, QK_NORM: tl.constexpr):
    """Heads `heads` [G] of the qkv row, normed (QK_NORM) and rotated as `rope.rope_and_cache_reference`."""
    half = HD // 2
    rolled = (d + half) % HD
    ok = head_ok[:, None] & (d < HD)[None, :]
    x = tl.load(qkv_ptr + heads[:, None] * HD + d[None, :], mask=ok, other=0.0, cache_modifier=".cg")
    xr = tl.load(qkv_ptr + heads[:, None] * HD + rolled[None, :], mask=ok, other=0.0, cache_modifier=".cg")
    if QK_NORM:  # F.rms_norm without weight (float32, rounded), then times the weight
        xf = x.to(tl.float32)
        rstd = 1.0 / tl.sqrt(tl.sum(xf * xf, axis=1) / HD + eps)
        x = ((xf * rstd[:, None]).to(x.dtype) * tl.load(qn_ptr + heads[:, None] * HD + d[None, :], mask=ok,
                                                         other=0.0)).to(x.dtype)
        xr = ((xr.to(tl.float32) * rstd[:, None]).to(x.dtype) * tl.load(
            qn_ptr + heads[:, None] * HD + rolled[None, :], mask=ok, other=0.0)).to(x.dtype)
    c = tl.load(cos_ptr + d, mask=d < HD, other=0.0)
    s = tl.load(sin_ptr + d, mask=d < HD, other=0.0)
    return ((x * c[None, :]).to(x.dtype).to(tl.float32) + xr.to(tl.float32) * s.to(tl.float32)[None, :]).to(x.dtype)


@triton.jit
def attention_item(qkv_ptr, qn_ptr, cos_ptr, sin_ptr, k_ptr, v_ptr, attn_ptr, acc_ws, ml_ws, cnt_ptr, item,
                   start, pad, split_cols, NH, NKV, HD, GROUP, stride_kh, stride_ks, eps, sm_scale,
                   QK_NORM: tl.constexpr, IEEE: tl.constexpr, NSPLIT: tl.constexpr, SPLITS_P2: tl.constexpr,
                   BLOCK_G: tl.constexpr,
                   BLOCK_D: tl.constexpr, BLOCK_S: tl.constexpr):
    """KV head item // NSPLIT's query heads over the (item % NSPLIT)-th run of split_cols columns; the split
    holding column `start` writes this token's key and value there. The last split to finish combines them
    (a tree sum over splits: the same whichever program finished last)."""
    h, split = item // NSPLIT, item % NSPLIT
    g = tl.arange(0, BLOCK_G)
    d = tl.arange(0, BLOCK_D)
    d_ok = d < HD
    q = rope_heads(qkv_ptr, qn_ptr, cos_ptr, sin_ptr, h * GROUP + g, g < GROUP, d, HD, eps, QK_NORM)
    one = g == 0
    k_new = rope_heads(qkv_ptr, qn_ptr, cos_ptr, sin_ptr, NH + h + g * 0, one, d, HD, eps, QK_NORM)
    k_new = tl.sum(tl.where(one[:, None], k_new.to(tl.float32), 0.0), axis=0).to(k_new.dtype)  # [BLOCK_D]
    v_new = tl.load(qkv_ptr + (NH + NKV + h) * HD + d, mask=d_ok, other=0.0, cache_modifier=".cg")
    lo = split * split_cols
    k_base = k_ptr + h * stride_kh
    v_base = v_ptr + h * stride_kh
    if (start >= lo) & (start < lo + split_cols):
        tl.store(k_base + start * stride_ks + d, k_new, mask=d_ok)
        tl.store(v_base + start * stride_ks + d, v_new, mask=d_ok)
    m_i = tl.full((BLOCK_G,), float("-inf"), dtype=tl.float32)
    l_i = tl.zeros((BLOCK_G,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_G, BLOCK_D), dtype=tl.float32)
    for n0 in range(lo, tl.minimum(lo + split_cols, start + 1), BLOCK_S):
        cols = n0 + tl.arange(0, BLOCK_S)
        seen = (cols <= start) & ((cols >= pad) | (cols == start))  # causal, blind to left padding
        new = (cols == start)[:, None]
        kv_mask = (seen & (cols != start))[:, None] & d_ok[None, :]
        k = tl.load(k_base + cols[:, None] * stride_ks + d[None, :], mask=kv_mask, other=0.0)
        k = tl.where(new, k_new[None, :], k)
        s = tl.where(seen[None, :], qk_scores(q, k, IEEE) * sm_scale * LOG2E, float("-inf"))
        v = tl.load(v_base + cols[:, None] * stride_ks + d[None, :], mask=kv_mask, other=0.0)
        v = tl.where(new, v_new[None, :], v)
        m_i, l_i, acc = online_softmax_update(s, v, m_i, l_i, acc, IEEE)
    out_ptrs = attn_ptr + (h * GROUP + g)[:, None] * HD + d[None, :]
    out_mask = (g < GROUP)[:, None] & d_ok[None, :]
    if NSPLIT == 1:
        tl.store(out_ptrs, (acc / tl.where(l_i == 0.0, 1.0, l_i)[:, None]).to(attn_ptr.dtype.element_ty),
                 mask=out_mask)
    else:
        part = (h * NSPLIT + split) * BLOCK_G
        tl.store(acc_ws + (part + g)[:, None] * BLOCK_D + d[None, :], acc)
        tl.store(ml_ws + 2 * part + g, m_i)
        tl.store(ml_ws + 2 * part + BLOCK_G + g, l_i)
        tl.debug_barrier()  # every thread's partials stored before the count says so
        if tl.atomic_add(cnt_ptr + h, 1, sem="acq_rel", scope="gpu") == NSPLIT - 1:
            sp = tl.arange(0, SPLITS_P2)
            sp_ok = (sp < NSPLIT)[:, None]
            base = (h * NSPLIT + sp)[:, None] * BLOCK_G  # [SPLITS_P2, 1]: one round of loads for every split
            m_s = tl.load(ml_ws + 2 * base + g[None, :], mask=sp_ok, other=float("-inf"), cache_modifier=".cg")
            l_s = tl.load(ml_ws + 2 * base + BLOCK_G + g[None, :], mask=sp_ok, other=0.0, cache_modifier=".cg")
            parts = tl.load(acc_ws + ((base + g[None, :]) * BLOCK_D)[:, :, None] + d[None, None, :],
                            mask=sp_ok[:, :, None], other=0.0, cache_modifier=".cg")
            m = tl.max(m_s, axis=0)
            m = tl.where(m == float("-inf"), 0.0, m)
            weight = tl.exp2(m_s - m[None, :])  # [SPLITS_P2, BLOCK_G]
            total = tl.sum(l_s * weight, axis=0)
            out = tl.sum(parts * weight[:, :, None], axis=0)
            tl.store(out_ptrs, (out / tl.where(total == 0.0, 1.0, total)[:, None]).to(attn_ptr.dtype.element_ty),
                     mask=out_mask)
            tl.atomic_xchg(cnt_ptr + h, 0)  # ready for the next layer and launch
