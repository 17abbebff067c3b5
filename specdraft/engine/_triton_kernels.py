"""The Triton source of `specdraft.engine.kernels` (imported only where Triton is: a CUDA device, or the
interpreter in tests). Triton resolves a kernel's helpers among its module's globals, hence a module."""

import triton
import triton.language as tl

try:  # grid dependency control: Triton 3.4 and later
    from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait

    HAS_GRID_DEPENDENCY_CONTROL = True
except ImportError:  # older Triton: kernels are never launched with PDL (`kernels.pdl_supported`)
    HAS_GRID_DEPENDENCY_CONTROL = False


@triton.jit
def wait_for_previous_kernel(PDL: tl.constexpr):
    """Programmatic dependent launch (Hopper on): a kernel launched with `launch_pdl` may start while the
    kernel before it in the stream is still running. Wait here for that kernel's writes to be complete and
    visible before reading anything it writes or writing anything."""
    if PDL:
        gdc_wait()


@triton.jit
def let_next_kernel_launch(PDL: tl.constexpr):
    """Let the next kernel launch early: its programs start once every program of this one has got here (or
    ended), and wait in `wait_for_previous_kernel` for this one to finish. A long kernel calls this when its
    main loop is done, a short one right after its wait. Measured on the H200 (docs/performance.md), the
    14B int8 one-token step with every kernel launched dependently took 8.95 ms with this at each program's
    start and 6.91 ms with it after the main loop (two runs; plain launches: 6.30 and 6.34); its 6-token
    verification, 8.29 and 8.66 ms (plain: 6.45, 6.48). The likely reason for the first, not profiled: a
    waiting program of the next kernel takes the first SM slot that frees up, so let in early, those
    programs pile onto the SMs that finished first while the others still run this kernel's last wave."""
    if PDL:
        gdc_launch_dependents()


@triton.jit
def prefetch_to_l2(ptrs, mask, PDL: tl.constexpr):
    """Ask for each masked-in address's cache line in L2 without waiting for it (PTX prefetch.global.L2):
    for a kernel's weights (which no earlier kernel writes) while the kernel before it is still running."""
    if PDL:
        tl.inline_asm_elementwise("{ .reg .pred p; setp.ne.b32 p, $2, 0; @p prefetch.global.L2 [$1]; mov.u32 $0, 0; }",
                                  "=r,l,r", [ptrs, mask.to(tl.int32)], dtype=tl.int32, is_pure=False, pack=1)


@triton.jit
def multiply_add(acc, a, w, DOT: tl.constexpr, IEEE: tl.constexpr):
    """acc [BLOCK_M, BLOCK_N] + a [BLOCK_M, BLOCK_K] @ w [BLOCK_N, BLOCK_K].T, w converted in registers: on
    the tensor cores (DOT), or as broadcast products summed over K (BLOCK_M = 1: a GEMV, no padded rows)."""
    if DOT:
        if IEEE:
            acc = tl.dot(a, tl.trans(w.to(a.dtype)), acc, input_precision="ieee")
        else:
            acc = tl.dot(a, tl.trans(w.to(a.dtype)), acc)
    else:
        acc += tl.sum(a.to(tl.float32)[:, None, :] * w.to(tl.float32)[None, :, :], axis=2)
    return acc


@triton.jit
def load_int4(w_ptr, s_ptr, n, n_ok, k0, K, stride_wn, stride_sn, dtype: tl.constexpr, BLOCK_N: tl.constexpr,
              BLOCK_K: tl.constexpr, GROUP: tl.constexpr):
    """Weight rows n, columns k0 .. k0 + BLOCK_K of a packed int4 matrix, dequantized in registers to `dtype`:
    the bytes [BLOCK_N, BLOCK_K / 2] (column 2j in byte j's low nibble, 2j + 1 in its high one, each as q + 8),
    both nibbles unpacked and interleaved back, times each group's scale (q * scale rounded to `dtype`, as
    `quant.dequantize_int4` rounds it). k0 and BLOCK_K are multiples of GROUP; so is K."""
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
def finish(acc, acc_up, squares, rows, cols, row_ok, col_ok, N, K, eps, s_ptr, b_ptr, r_ptr, o_ptr, stride_rm,
           stride_om, HAS_SCALE: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_RESIDUAL: tl.constexpr,
           NORM: tl.constexpr, GLU: tl.constexpr):
    """The epilogue: RMSNorm's 1/rms of each row (the norm weight went into the input), per-channel scale,
    bias, SiLU(gate) * up (GLU: acc holds the gate columns, acc_up the up columns N further on, each rounded
    to the output dtype first, as the reference's matmul output is), residual add; then the store."""
    out_mask = row_ok[:, None] & col_ok[None, :]
    if NORM:
        rstd = 1.0 / tl.sqrt(squares / K + eps)
        acc = acc * rstd[:, None]
        if GLU:
            acc_up = acc_up * rstd[:, None]
    if HAS_SCALE:
        acc = acc * tl.load(s_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
        if GLU:
            acc_up = acc_up * tl.load(s_ptr + N + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
    if HAS_BIAS:
        acc += tl.load(b_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
        if GLU:
            acc_up += tl.load(b_ptr + N + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
    if GLU:  # as F.silu(gate) * up on the rounded matmul outputs
        gate = acc.to(o_ptr.dtype.element_ty).to(tl.float32)
        up = acc_up.to(o_ptr.dtype.element_ty)
        acc = ((gate * tl.sigmoid(gate)).to(o_ptr.dtype.element_ty) * up).to(tl.float32)
    if HAS_RESIDUAL:
        acc += tl.load(r_ptr + rows[:, None] * stride_rm + cols[None, :], mask=out_mask, other=0.0).to(tl.float32)
    tl.store(o_ptr + rows[:, None] * stride_om + cols[None, :], acc.to(o_ptr.dtype.element_ty), mask=out_mask)


@triton.jit(do_not_specialize=["M"])
def linear_kernel(x_ptr, w_ptr, s_ptr, b_ptr, r_ptr, nw_ptr, o_ptr, ws_ptr, ss_ptr, M, N, K, K_PER_SPLIT,
                  stride_xm, stride_wn, stride_sn, stride_rm, stride_om, eps, HAS_SCALE: tl.constexpr,
                  HAS_BIAS: tl.constexpr, HAS_RESIDUAL: tl.constexpr, NORM: tl.constexpr, GLU: tl.constexpr,
                  SPLIT_K: tl.constexpr, INT4: tl.constexpr, GROUP: tl.constexpr, IEEE: tl.constexpr,
                  DOT: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                  PDL: tl.constexpr = False, PREFETCH_LINES: tl.constexpr = 1, LINE_ELEMS: tl.constexpr = 64):
    """Program (n, k): output columns n * BLOCK_N.. over the k-th of SPLIT_K slices of K. NORM: the input is
    x * norm_weight and the row's sum of squares is gathered from the same tiles on the way (the 1/rms is
    applied after the sum, so no pass over the row precedes the weight loads). GLU: the weight holds 2N rows,
    gate then up, and each program multiplies both halves for its columns. The weight is floating, int8
    (HAS_SCALE: per-channel scales, applied in the epilogue) or packed int4 (INT4: scales per GROUP columns
    of K vary along K, so `load_int4` applies them to each tile before the multiply). PDL: launched early
    (programmatic dependent launch), the program first asks for the start of its weight rows in L2 -- PREFETCH_LINES
    cache lines of LINE_ELEMS stored elements each -- then waits for the kernel before it."""
    pid_n, pid_k = tl.program_id(0), tl.program_id(1)
    rows = tl.arange(0, BLOCK_M)
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
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    acc_up = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    squares_tile = tl.zeros((BLOCK_M, BLOCK_K), dtype=tl.float32)  # summed over K once, after the loop
    k_start = pid_k * K_PER_SPLIT
    for k0 in range(k_start, k_start + K_PER_SPLIT, BLOCK_K):
        ks = k0 + offs
        k_ok = ks < K
        a = tl.load(x_ptr + rows[:, None] * stride_xm + ks[None, :], mask=row_ok[:, None] & k_ok[None, :], other=0.0)
        if NORM:
            af = a.to(tl.float32)
            squares_tile += af * af  # element-wise: no reduction across threads inside the loop
            a = (a * tl.load(nw_ptr + ks, mask=k_ok, other=0.0)[None, :]).to(a.dtype)
        if INT4:
            w = load_int4(w_ptr, s_ptr, cols, col_ok, k0, K, stride_wn, stride_sn, a.dtype, BLOCK_N, BLOCK_K, GROUP)
        else:
            w = tl.load(w_ptr + cols[:, None] * stride_wn + ks[None, :], mask=col_ok[:, None] & k_ok[None, :],
                        other=0)
        acc = multiply_add(acc, a, w, DOT, IEEE)
        if GLU:
            if INT4:
                w_up = load_int4(w_ptr, s_ptr, N + cols, col_ok, k0, K, stride_wn, stride_sn, a.dtype, BLOCK_N,
                                 BLOCK_K, GROUP)
            else:
                w_up = tl.load(w_ptr + (N + cols)[:, None] * stride_wn + ks[None, :],
                               mask=col_ok[:, None] & k_ok[None, :], other=0)
            acc_up = multiply_add(acc_up, a, w_up, DOT, IEEE)
    let_next_kernel_launch(PDL)
    squares = tl.sum(squares_tile, axis=1)
    if SPLIT_K > 1:  # float32 partials, summed in a fixed order by split_k_epilogue
        out_mask = row_ok[:, None] & col_ok[None, :]
        part = ws_ptr + pid_k * (1 + GLU) * BLOCK_M * N + rows[:, None] * N + cols[None, :]
        tl.store(part, acc, mask=out_mask)
        if GLU:
            tl.store(part + BLOCK_M * N, acc_up, mask=out_mask)
        if NORM:
            if pid_n == 0:
                tl.store(ss_ptr + pid_k * BLOCK_M + rows, squares, mask=row_ok)
    else:
        finish(acc, acc_up, squares, rows, cols, row_ok, col_ok, N, K, eps, s_ptr, b_ptr, r_ptr, o_ptr, stride_rm,
               stride_om, HAS_SCALE, HAS_BIAS, HAS_RESIDUAL, NORM, GLU)


@triton.jit(do_not_specialize=["M"])
def split_k_epilogue(ws_ptr, ss_ptr, s_ptr, b_ptr, r_ptr, o_ptr, M, N, K, stride_rm, stride_om, eps,
                     HAS_SCALE: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_RESIDUAL: tl.constexpr, NORM: tl.constexpr,
                     GLU: tl.constexpr, SPLIT_K: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                     PDL: tl.constexpr = False):
    wait_for_previous_kernel(PDL)
    let_next_kernel_launch(PDL)
    cols = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    rows = tl.arange(0, BLOCK_M)
    row_ok, col_ok = rows < M, cols < N
    mask = row_ok[:, None] & col_ok[None, :]
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    acc_up = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    squares = tl.zeros((BLOCK_M,), dtype=tl.float32)
    for split in range(SPLIT_K):  # a fixed order: the same sum on every run
        part = ws_ptr + split * (1 + GLU) * BLOCK_M * N + rows[:, None] * N + cols[None, :]
        acc += tl.load(part, mask=mask, other=0.0)
        if GLU:
            acc_up += tl.load(part + BLOCK_M * N, mask=mask, other=0.0)
        if NORM:
            squares += tl.load(ss_ptr + split * BLOCK_M + rows, mask=row_ok, other=0.0)
    finish(acc, acc_up, squares, rows, cols, row_ok, col_ok, N, K, eps, s_ptr, b_ptr, r_ptr, o_ptr, stride_rm,
           stride_om, HAS_SCALE, HAS_BIAS, HAS_RESIDUAL, NORM, GLU)


@triton.jit
def rope_and_cache_kernel(qkv_ptr, cos_ptr, sin_ptr, qn_ptr, col_ptr, q_ptr, k_ptr, v_ptr, T, NH, NKV, HD, GROUP,
                          stride_tok, col_row_stride, stride_kb, stride_kh, stride_ks, stride_vb, stride_vh,
                          stride_vs, eps, QK_NORM: tl.constexpr, BLOCK_D: tl.constexpr, PDL: tl.constexpr = False):
    """One program per (token, head) of qkv [B*T, NH + 2 NKV, HD]: a query or key head gets Qwen3's per-head
    RMSNorm (QK_NORM) and rotate-half RoPE, then a query goes to q [B, NKV, T * GROUP, HD] (its KV group's
    rows) and a key to the key cache at its column; a value head is copied to the value cache."""
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


LOG2E = tl.constexpr(1.4426950408889634)  # softmax in base 2: exp(x) = exp2(x * log2(e))


@triton.jit(do_not_specialize=["R", "KV_LEN", "BLOCKS_PER_SPLIT"])
def decode_attention_kernel(q_ptr, k_ptr, v_ptr, mask_ptr, o_ptr, acc_ws_ptr, ml_ws_ptr, R, KV_LEN, NKV, HD,
                            BLOCKS_PER_SPLIT, sm_scale, stride_qb, stride_qh, stride_qr, stride_kb, stride_kh,
                            stride_ks, stride_vb, stride_vh, stride_vs, stride_mb, stride_mr, stride_mn,
                            PARTIAL: tl.constexpr, IEEE: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_N: tl.constexpr,
                            BLOCK_D: tl.constexpr, PDL: tl.constexpr = False):
    """Program (b * NKV + h, split): the R query rows of KV head h of batch row b (a KV group's query heads
    for each token, padded to BLOCK_R rows for the tensor cores) against the split-th run of BLOCKS_PER_SPLIT
    key blocks of the first KV_LEN cache columns, as an online softmax (flash-decoding). PARTIAL: the
    unnormalised float32 output and each row's running max and sum go to the workspaces for
    `decode_attention_combine`; else the split is the only one and the normalised output is stored."""
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
        if IEEE:
            s = tl.dot(q, tl.trans(k), input_precision="ieee")
        else:
            s = tl.dot(q, tl.trans(k))
        bias = tl.load(mask_base + cols[None, :] * stride_mn, mask=row_ok[:, None] & col_ok[None, :],
                       other=float("-inf")).to(tl.float32)
        s = (s * sm_scale + bias) * LOG2E  # [BLOCK_R, BLOCK_N]
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        # A row with every column so far masked keeps m = -inf: shift by 0 so that exp2 gives 0, not NaN.
        m_shift = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp2(m_i - m_shift)
        p = tl.exp2(s - m_shift[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        v = tl.load(v_base + cols[:, None] * stride_vs + d[None, :], mask=kv_mask, other=0.0)
        acc = acc * alpha[:, None]
        if IEEE:
            acc = tl.dot(p.to(v.dtype), v, acc, input_precision="ieee")
        else:
            acc = tl.dot(p.to(v.dtype), v, acc)
        m_i = m_new
    let_next_kernel_launch(PDL)
    out_mask = row_ok[:, None] & d_ok[None, :]
    if PARTIAL:
        num_splits = tl.num_programs(1)
        tl.store(acc_ws_ptr + ((bh * num_splits + split) * R + rows[:, None]) * HD + d[None, :], acc, mask=out_mask)
        ml = ml_ws_ptr + (bh * num_splits + split) * 2 * R + rows
        tl.store(ml, m_i, mask=row_ok)
        tl.store(ml + R, l_i, mask=row_ok)
    else:
        out = acc / tl.where(l_i == 0.0, 1.0, l_i)[:, None]  # l = 0 only on padding rows (not stored)
        tl.store(o_ptr + (bh * R + rows[:, None]) * HD + d[None, :], out.to(o_ptr.dtype.element_ty), mask=out_mask)


@triton.jit(do_not_specialize=["R", "NUM_SPLITS"])
def decode_attention_combine(acc_ws_ptr, ml_ws_ptr, o_ptr, R, HD, NUM_SPLITS, BLOCK_R: tl.constexpr,
                             BLOCK_D: tl.constexpr, PDL: tl.constexpr = False):
    """Program (b * NKV + h, row block): the splits' partial outputs of those rows rescaled to their common
    max and summed, in split order (the same sum on every run), then normalised."""
    wait_for_previous_kernel(PDL)
    let_next_kernel_launch(PDL)
    bh = tl.program_id(0)
    rows = tl.program_id(1) * BLOCK_R + tl.arange(0, BLOCK_R)
    d = tl.arange(0, BLOCK_D)
    row_ok = rows < R
    mask = row_ok[:, None] & (d < HD)[None, :]
    m = tl.full((BLOCK_R,), float("-inf"), dtype=tl.float32)
    for split in range(NUM_SPLITS):
        m = tl.maximum(m, tl.load(ml_ws_ptr + (bh * NUM_SPLITS + split) * 2 * R + rows, mask=row_ok,
                                  other=float("-inf")))
    m = tl.where(m == float("-inf"), 0.0, m)  # padding rows only: every real row sees its own column
    l = tl.zeros((BLOCK_R,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_R, BLOCK_D), dtype=tl.float32)
    for split in range(NUM_SPLITS):
        ml = ml_ws_ptr + (bh * NUM_SPLITS + split) * 2 * R + rows
        weight = tl.exp2(tl.load(ml, mask=row_ok, other=float("-inf")) - m)  # 0 for a split with all masked
        l += tl.load(ml + R, mask=row_ok, other=0.0) * weight
        part = tl.load(acc_ws_ptr + ((bh * NUM_SPLITS + split) * R + rows[:, None]) * HD + d[None, :], mask=mask,
                       other=0.0)
        acc += part * weight[:, None]
    out = acc / tl.where(l == 0.0, 1.0, l)[:, None]
    tl.store(o_ptr + (bh * R + rows[:, None]) * HD + d[None, :], out.to(o_ptr.dtype.element_ty), mask=mask)
