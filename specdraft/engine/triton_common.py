"""Triton helpers every kernel family uses: programmatic dependent launch (PDL) and L2 prefetch. Imported
only where Triton is (a CUDA device, or the interpreter in tests)."""

import triton
import triton.language as tl

try:  # grid dependency control: Triton 3.4 and later
    from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait

    HAS_GRID_DEPENDENCY_CONTROL = True
except ImportError:  # older Triton: kernels are never launched with PDL (`launch.pdl_supported`)
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
    main loop is done, a short one right after its wait: let in at a program's start, the next kernel's
    waiting programs take the first SM slots that free up and pile onto the SMs that finished first while
    the others still run this kernel's last wave (docs/performance.md has the timings)."""
    if PDL:
        gdc_launch_dependents()


@triton.jit
def prefetch_to_l2(ptrs, mask, PDL: tl.constexpr):
    """Ask for each masked-in address's cache line in L2 without waiting for it (PTX prefetch.global.L2):
    for a kernel's weights (which no earlier kernel writes) while the kernel before it is still running."""
    if PDL:
        tl.inline_asm_elementwise("{ .reg .pred p; setp.ne.b32 p, $2, 0; @p prefetch.global.L2 [$1]; mov.u32 $0, 0; }",
                                  "=r,l,r", [ptrs, mask.to(tl.int32)], dtype=tl.int32, is_pure=False, pack=1)
