"""A kernel that runs `triton_gemv.int8_to_float32` on 256 values (a module of its own: Triton resolves a
kernel's helpers among its module's globals, and the test modules import without Triton)."""

import triton
import triton.language as tl

from specdraft.engine.triton_gemv import int8_to_float32


@triton.jit
def convert(w_ptr, o_ptr, FAST: tl.constexpr):
    i = tl.arange(0, 256)
    tl.store(o_ptr + i, int8_to_float32(tl.load(w_ptr + i), FAST))
