"""The Triton source of `specdraft.engine.kernels` (imported only where Triton is: a CUDA device, or the
interpreter in tests). Triton resolves a kernel's helpers among its module's globals, hence a module."""

import triton
import triton.language as tl


@triton.jit
def load_input(x_ptr, nw_ptr, rows, ks, row_ok, k_ok, stride_xm, K, rstd, NORM: tl.constexpr,
               SILU_MUL: tl.constexpr):
    """The matmul's input tile [BLOCK_M, BLOCK_K] in x's dtype: x, RMSNorm(x) * w, or SiLU(gate) * up."""
    mask = row_ok[:, None] & k_ok[None, :]
    x = tl.load(x_ptr + rows[:, None] * stride_xm + ks[None, :], mask=mask, other=0.0)
    if NORM:  # as F.rms_norm: normalise in float32, round, multiply by the weight
        w = tl.load(nw_ptr + ks, mask=k_ok, other=0.0)
        x = ((x.to(tl.float32) * rstd[:, None]).to(x.dtype) * w[None, :]).to(x.dtype)
    if SILU_MUL:  # x holds [gate | up], each K wide
        up = tl.load(x_ptr + rows[:, None] * stride_xm + K + ks[None, :], mask=mask, other=0.0)
        gate = x.to(tl.float32)
        x = ((gate * tl.sigmoid(gate)).to(up.dtype) * up).to(up.dtype)
    return x

@triton.jit(do_not_specialize=["M"])
def int8_linear_kernel(x_ptr, w_ptr, s_ptr, b_ptr, r_ptr, nw_ptr, o_ptr, ws_ptr, M, N, K, K_PER_SPLIT,
                       stride_xm, stride_wn, stride_rm, stride_om, eps, HAS_BIAS: tl.constexpr,
                       HAS_RESIDUAL: tl.constexpr, NORM: tl.constexpr, SILU_MUL: tl.constexpr,
                       SPLIT_K: tl.constexpr, IEEE: tl.constexpr, BLOCK_M: tl.constexpr,
                       BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    pid_n, pid_k = tl.program_id(0), tl.program_id(1)
    rows = tl.arange(0, BLOCK_M)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs = tl.arange(0, BLOCK_K)
    row_ok, col_ok = rows < M, cols < N
    rstd = tl.zeros((BLOCK_M,), dtype=tl.float32)
    if NORM:  # the whole row's mean square, whatever part of K this program multiplies
        squares = tl.zeros((BLOCK_M,), dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            ks = k0 + offs
            x = tl.load(x_ptr + rows[:, None] * stride_xm + ks[None, :], mask=row_ok[:, None] & (ks < K)[None, :],
                        other=0.0).to(tl.float32)
            squares += tl.sum(x * x, axis=1)
        rstd = 1.0 / tl.sqrt(squares / K + eps)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    k_start = pid_k * K_PER_SPLIT
    for k0 in range(k_start, k_start + K_PER_SPLIT, BLOCK_K):
        ks = k0 + offs
        k_ok = ks < K
        a = load_input(x_ptr, nw_ptr, rows, ks, row_ok, k_ok, stride_xm, K, rstd, NORM, SILU_MUL)
        w = tl.load(w_ptr + cols[:, None] * stride_wn + ks[None, :], mask=col_ok[:, None] & k_ok[None, :],
                    other=0)  # [BLOCK_N, BLOCK_K] int8
        if IEEE:
            acc = tl.dot(a, tl.trans(w.to(a.dtype)), acc, input_precision="ieee")
        else:
            acc = tl.dot(a, tl.trans(w.to(a.dtype)), acc)
    out_mask = row_ok[:, None] & col_ok[None, :]
    if SPLIT_K > 1:
        tl.store(ws_ptr + pid_k * BLOCK_M * N + rows[:, None] * N + cols[None, :], acc, mask=out_mask)
    else:
        acc = acc * tl.load(s_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
        if HAS_BIAS:
            acc += tl.load(b_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
        if HAS_RESIDUAL:
            acc += tl.load(r_ptr + rows[:, None] * stride_rm + cols[None, :], mask=out_mask,
                           other=0.0).to(tl.float32)
        tl.store(o_ptr + rows[:, None] * stride_om + cols[None, :], acc.to(o_ptr.dtype.element_ty), mask=out_mask)

@triton.jit(do_not_specialize=["M"])
def split_k_epilogue(ws_ptr, s_ptr, b_ptr, r_ptr, o_ptr, M, N, stride_rm, stride_om, HAS_BIAS: tl.constexpr,
                     HAS_RESIDUAL: tl.constexpr, SPLIT_K: tl.constexpr, BLOCK_M: tl.constexpr,
                     BLOCK_N: tl.constexpr):
    cols = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    rows = tl.arange(0, BLOCK_M)
    col_ok = cols < N
    mask = (rows < M)[:, None] & col_ok[None, :]
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for split in range(SPLIT_K):  # a fixed order: the same sum on every run
        acc += tl.load(ws_ptr + split * BLOCK_M * N + rows[:, None] * N + cols[None, :], mask=mask, other=0.0)
    acc = acc * tl.load(s_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
    if HAS_BIAS:
        acc += tl.load(b_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
    if HAS_RESIDUAL:
        acc += tl.load(r_ptr + rows[:, None] * stride_rm + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    tl.store(o_ptr + rows[:, None] * stride_om + cols[None, :], acc.to(o_ptr.dtype.element_ty), mask=mask)


@triton.jit
def rope_and_cache_kernel(qkv_ptr, cos_ptr, sin_ptr, qn_ptr, col_ptr, q_ptr, k_ptr, v_ptr, T, NH, NKV, HD, GROUP,
                          stride_tok, col_row_stride, stride_kb, stride_kh, stride_ks, stride_vb, stride_vh,
                          stride_vs, eps, QK_NORM: tl.constexpr, BLOCK_D: tl.constexpr):
    """One program per (token, head) of qkv [B*T, NH + 2 NKV, HD]: a query or key head gets Qwen3's per-head
    RMSNorm (QK_NORM) and rotate-half RoPE, then a query goes to q [B, NKV, T * GROUP, HD] (its KV group's
    rows) and a key to the key cache at its column; a value head is copied to the value cache."""
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
