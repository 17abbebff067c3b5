"""Triton helpers every kernel family uses: the float32-exact dot, programmatic dependent launch (PDL), L2
prefetch and a matmul epilogue's scale and bias. Imported only where Triton is (a CUDA device, or the interpreter in tests)."""

import triton
import triton.language as tl

try:  # grid dependency control: Triton 3.4 and later
    from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait

    HAS_GRID_DEPENDENCY_CONTROL = True
except ImportError:  # older Triton: kernels are never launched with PDL (`launch.pdl_supported`)
    HAS_GRID_DEPENDENCY_CONTROL = False


@triton.jit
def dot(a, b, acc, IEEE: tl.constexpr):
    """a @ b + acc (acc None: a @ b) in float32. IEEE: exact float32 products, as the float32 engines need;
    otherwise the tensor cores' default precision (TF32 for float32 inputs)."""
    if IEEE:
        acc = tl.dot(a, b, acc, input_precision="ieee")
    else:
        acc = tl.dot(a, b, acc)
    return acc


@triton.jit
def wait_for_previous_kernel(PDL: tl.constexpr):
    """Under PDL a kernel may start before the previous one ends: wait for its writes before touching memory."""
    if PDL:
        gdc_wait()


@triton.jit
def let_next_kernel_launch(PDL: tl.constexpr):
    """Let the next kernel launch early. Long kernels call it after their main loop: called at the start, the
    next kernel's waiting programs would take SM slots from this kernel's last wave."""
    if PDL:
        gdc_launch_dependents()


@triton.jit
def prefetch_to_l2(ptrs, mask, PDL: tl.constexpr):
    """Prefetch each masked-in address's line into L2 (only for data no earlier kernel writes)."""
    if PDL:
        tl.inline_asm_elementwise("{ .reg .pred p; setp.ne.b32 p, $2, 0; @p prefetch.global.L2 [$1]; mov.u32 $0, 0; }",
                                  "=r,l,r", [ptrs, mask.to(tl.int32)], dtype=tl.int32, is_pure=False, pack=1)


@triton.jit
def scale_and_bias(cols, col_ok, s_ptr, b_ptr, N, HAS_SCALE: tl.constexpr, HAS_BIAS: tl.constexpr,
                   GLU: tl.constexpr):
    """A matmul epilogue's per-column scale and bias of columns `cols` (under GLU up's too, N rows on), in
    float32; zeros where absent."""
    zero = tl.zeros(cols.shape, dtype=tl.float32)
    scale, scale_up, bias, bias_up = zero, zero, zero, zero
    if HAS_SCALE:
        scale = tl.load(s_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
        if GLU:
            scale_up = tl.load(s_ptr + N + cols, mask=col_ok, other=0.0).to(tl.float32)
    if HAS_BIAS:
        bias = tl.load(b_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
        if GLU:
            bias_up = tl.load(b_ptr + N + cols, mask=col_ok, other=0.0).to(tl.float32)
    return scale, scale_up, bias, bias_up
