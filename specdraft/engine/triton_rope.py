"""The Triton source of `rope.rope_and_cache`: per-head norm, RoPE and cache writes in one kernel."""

import triton
import triton.language as tl

from specdraft.engine.triton_common import let_next_kernel_launch, wait_for_previous_kernel


@triton.jit
def rope_and_cache_kernel(qkv_ptr, cos_ptr, sin_ptr, qn_ptr, col_ptr, q_ptr, k_ptr, v_ptr, T, NH, NKV, HD, GROUP,
                          stride_tok, col_row_stride, stride_kb, stride_kh, stride_ks, stride_vb, stride_vh,
                          stride_vs, eps, QK_NORM: tl.constexpr, BLOCK_D: tl.constexpr, PDL: tl.constexpr = False):
    """One program per (token, head) of qkv [B*T, NH + 2 NKV, HD]: queries and keys normed (QK_NORM) and
    RoPE'd into q [B, NKV, T * GROUP, HD] and the key cache; values copied to the value cache."""
    wait_for_previous_kernel(PDL)
    let_next_kernel_launch(PDL)
    bt, h = tl.program_id(0), tl.program_id(1)
    b, t = bt // T, bt % T
    d = tl.arange(0, BLOCK_D)
    ok = d < HD
    base = qkv_ptr + bt * stride_tok + h * HD
    x = tl.load(base + d, mask=ok, other=0.0)
    column = tl.load(col_ptr + b * col_row_stride + t)
    if h < NH + NKV:
        half = HD // 2
        rolled_d = (d + half) % HD  # torch.roll(x, HD / 2)[d]
        xr = tl.load(base + rolled_d, mask=ok, other=0.0)
        if QK_NORM:  # F.rms_norm without weight (float32, rounded), then times the weight
            xf = x.to(tl.float32)
            rstd = 1.0 / tl.sqrt(tl.sum(xf * xf, axis=0) / HD + eps)
            x = ((xf * rstd).to(x.dtype) * tl.load(qn_ptr + h * HD + d, mask=ok, other=0.0)).to(x.dtype)
            xr = ((xr.to(tl.float32) * rstd).to(x.dtype) * tl.load(qn_ptr + h * HD + rolled_d, mask=ok,
                                                                       other=0.0)).to(x.dtype)
        c = tl.load(cos_ptr + bt * HD + d, mask=ok, other=0.0)
        s = tl.load(sin_ptr + bt * HD + d, mask=ok, other=0.0)
        # As torch.addcmul(x * cos, roll(x), sin): x * cos rounded, then one fused multiply-add, rounded.
        out = ((x * c).to(x.dtype).to(tl.float32) + xr.to(tl.float32) * s.to(tl.float32)).to(x.dtype)
        if h < NH:
            kv_head, member = h // GROUP, h % GROUP
            row = (b * NKV + kv_head) * T * GROUP + t * GROUP + member
            tl.store(q_ptr + row * HD + d, out, mask=ok)
        else:
            tl.store(k_ptr + b * stride_kb + (h - NH) * stride_kh + column * stride_ks + d, out, mask=ok)
    else:
        tl.store(v_ptr + b * stride_vb + (h - NH - NKV) * stride_vh + column * stride_vs + d, x, mask=ok)
