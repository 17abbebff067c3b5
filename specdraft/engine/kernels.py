"""Triton kernels for the decode path on a CUDA device (imported only there; the CPU path never needs Triton).

`int8_linear`: out = residual + (a @ q.T) * scale + bias for at most MAX_FAST_ROWS rows (a decode step, a
verification, a batch of a few rows) and an int8 weight q [N, K] with per-output-channel scales. A step
at these sizes is bound by reading the weight, so the kernel reads the int8 weight once and converts it in
registers (bf16 weights dequantized by torch first would read 3x the bytes); scale, bias and the
residual add are its epilogue. It can also compute its input itself (prologues): RMSNorm(x) * norm_weight
(each program computes the row's norm from x, which is tiny and L2-resident) or SiLU(gate) * up from
x = [gate | up]; `quant.linear` uses them only when FUSE_PROLOGUES is set (see there why it is not).

Small N gives too few programs to keep every SM reading, so K may be split across SPLIT_K programs whose
float32 partial sums a second small kernel adds up (with the epilogue). Block shapes and SPLIT_K are tuned
per (N, K, rows, fusion) on first use, timing each candidate with CUDA events (that first use is a CUDA
graph's warm-up run, before capture; the weights are not flushed from L2 between timings, so matrices
smaller than L2 are tuned as if cached). A candidate that fails to compile is skipped; if all fail the
caller's reference path runs instead (`available_for` says so) and the failure is kept in FAILURES.
Triton's interpreter (TRITON_INTERPRET=1) runs the kernels on a CPU, for tests.
"""

from __future__ import annotations

import functools
import os
from typing import NamedTuple

import torch
from torch import Tensor

MAX_FAST_ROWS = 16  # one tensor-core tile of rows; more rows (prefills) take the reference path
# Whether `quant.linear` lets the kernel compute the RMSNorm / SiLU·mul input itself. Off: on the H200
# (docs/perf/h200_seed_int8_fused_2026-11-29.json) the 14B's int8 step with both prologues fused took
# 14.3 ms against 9.7 ms for bf16, although the same matrices through the plain kernel took 5.4 ms in all
# (linear_kernels_2026-11-29.json), and a float32 engine test parted from the reference at a gap of 1.7e-3
# (tests/test_engine_cuda.py); both unexplained yet, so the prologues stay in torch until profiled.
FUSE_PROLOGUES = False
FAILURES: dict[tuple, str] = {}  # tuning key -> why no candidate ran


class Config(NamedTuple):
    block_n: int
    block_k: int
    split_k: int
    num_warps: int
    num_stages: int


CANDIDATES = (Config(64, 256, 1, 4, 4), Config(32, 256, 1, 4, 4), Config(32, 256, 4, 4, 4),
              Config(16, 256, 8, 4, 3), Config(32, 128, 2, 4, 4))


@functools.cache
def available() -> bool:
    """Triton importable and a CUDA device present (or the interpreter asked for, for tests on a CPU)."""
    if os.environ.get("SPECDRAFT_NO_TRITON"):
        return False
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available() or _interpreting()


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


@functools.cache
def _kernels():
    from specdraft.engine import _triton_kernels

    return _triton_kernels.int8_linear_kernel, _triton_kernels.split_k_epilogue


_tuned: dict[tuple, Config | None] = {}


def tuned_configs() -> dict[tuple, Config | None]:
    """The block configuration each kernel shape was tuned to on first use (None: the torch path), a copy."""
    return dict(_tuned)


def _launch(config: Config, x: Tensor, q: Tensor, scale: Tensor, bias: Tensor | None, residual: Tensor | None,
            norm_weight: Tensor | None, eps: float, silu_mul: bool, out: Tensor) -> None:
    import triton

    main, epilogue = _kernels()
    M, N = out.shape
    K = q.shape[1]
    block_m = 16
    k_per_split = triton.cdiv(triton.cdiv(K, config.split_k), config.block_k) * config.block_k
    split_k = triton.cdiv(K, k_per_split)  # splits that have any K at all
    workspace = (torch.empty((split_k, block_m, N), dtype=torch.float32, device=x.device) if split_k > 1
                 else out)
    r = residual if residual is not None else out
    dummy = scale  # stands in for absent optional pointers (never read: the flags are off)
    grid = (triton.cdiv(N, config.block_n), split_k)
    main[grid](x, q, scale, bias if bias is not None else dummy, r, norm_weight if norm_weight is not None else dummy,
               out, workspace, M, N, K, k_per_split, x.stride(0), q.stride(0), r.stride(0), out.stride(0), eps,
               HAS_BIAS=bias is not None, HAS_RESIDUAL=residual is not None, NORM=norm_weight is not None,
               SILU_MUL=silu_mul, SPLIT_K=split_k, IEEE=x.dtype == torch.float32, BLOCK_M=block_m,
               BLOCK_N=config.block_n, BLOCK_K=config.block_k, num_warps=config.num_warps,
               num_stages=config.num_stages)
    if split_k > 1:
        epilogue[(triton.cdiv(N, 128),)](workspace, scale, bias if bias is not None else dummy, r, out, M, N,
                                         r.stride(0), out.stride(0), HAS_BIAS=bias is not None,
                                         HAS_RESIDUAL=residual is not None, SPLIT_K=split_k, BLOCK_M=block_m,
                                         BLOCK_N=128, num_warps=4)


def _tune(key: tuple, run) -> Config | None:
    """The fastest candidate for `key` (CUDA events over repeated launches), or None if none compiles."""
    if _interpreting():
        return CANDIDATES[2]  # one split-K configuration: the interpreter is slow, and it covers both kernels
    best, best_ms, errors = None, float("inf"), []
    for config in CANDIDATES:
        try:
            run(config)  # compiles
            torch.cuda.synchronize()
        except Exception as e:  # a candidate this Triton or GPU rejects: try the next  # noqa: BLE001
            errors.append(f"{config}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300])
            continue
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(20):
            run(config)
        end.record()
        end.synchronize()
        if (ms := start.elapsed_time(end)) < best_ms:
            best, best_ms = config, ms
    if best is None:
        FAILURES[key] = "; ".join(errors)
    return best


def int8_linear(x: Tensor, q: Tensor, scale: Tensor, bias: Tensor | None = None, residual: Tensor | None = None,
                norm_weight: Tensor | None = None, eps: float = 1e-6, silu_mul: bool = False) -> Tensor | None:
    """residual + (a @ q.T) * scale + bias with a = x, rms_norm(x) * norm_weight, or silu(gate) * up for
    x = [gate | up] (silu_mul). x: [..., K] or [..., 2K], at most MAX_FAST_ROWS rows; q: [N, K] int8;
    scale, bias: [N]; residual: [..., N]. Returns [..., N] in x's dtype, or None when no kernel
    configuration could run here (the caller then takes its reference path)."""
    K, N = q.shape[1], q.shape[0]
    x2 = x.reshape(-1, x.shape[-1])
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    M = x2.shape[0]
    if M > MAX_FAST_ROWS:
        raise ValueError(f"int8_linear takes at most {MAX_FAST_ROWS} rows, got {M}")
    if x2.shape[1] != (2 * K if silu_mul else K):
        raise ValueError(f"x has {x2.shape[1]} columns; the weight takes {K}{' (x2 for silu_mul)' if silu_mul else ''}")
    out = torch.empty((M, N), dtype=x.dtype, device=x.device)
    r2 = None
    if residual is not None:
        r2 = residual.reshape(-1, N)
        if r2.stride(-1) != 1:
            r2 = r2.contiguous()

    def run(config: Config) -> None:
        _launch(config, x2, q, scale, bias, r2, norm_weight, eps, silu_mul, out)

    key = (N, K, M, x.dtype, bias is not None, residual is not None, norm_weight is not None, silu_mul)
    if key not in _tuned:
        _tuned[key] = _tune(key, run)
    config = _tuned[key]
    if config is None:
        return None
    run(config)
    return out.view(*x.shape[:-1], N)


def rope_and_cache(qkv: Tensor, cos: Tensor, sin_signed: Tensor, k_cache: Tensor, v_cache: Tensor, columns: Tensor,
                   qk_norm: Tensor | None, eps: float, num_heads: int, num_kv_heads: int) -> Tensor | None:
    """`decoder.rope_and_cache_reference` as one kernel: qkv [B, T, nh + 2 nkv, hd] -> queries [B, nkv,
    T * group, hd]; keys (per-head norm and RoPE applied) and values written to the caches at `columns`.
    None (nothing written) where the kernel does not compile here: the caller then runs the reference."""
    import triton

    from specdraft.engine import _triton_kernels

    B, T, heads, head_dim = qkv.shape
    if qkv.stride(-1) != 1 or qkv.stride(-2) != head_dim or qkv.stride(0) != T * qkv.stride(1):
        qkv = qkv.contiguous()
    cos, sin_signed, columns = cos.contiguous(), sin_signed.contiguous(), columns.contiguous()
    group = num_heads // num_kv_heads
    q = torch.empty((B, num_kv_heads, T * group, head_dim), dtype=qkv.dtype, device=qkv.device)
    col_row_stride = 0 if columns.shape[0] == 1 else columns.stride(0)
    key = ("rope_and_cache", qkv.dtype, qk_norm is not None, head_dim)
    if key in FAILURES:
        return None
    try:
        _triton_kernels.rope_and_cache_kernel[(B * T, heads)](
            qkv, cos, sin_signed, qk_norm if qk_norm is not None else cos, columns, q, k_cache, v_cache, T,
            num_heads, num_kv_heads, head_dim, group, qkv.stride(1), col_row_stride, *k_cache.stride()[:3],
            *v_cache.stride()[:3], eps, QK_NORM=qk_norm is not None, BLOCK_D=triton.next_power_of_2(head_dim),
            num_warps=1)
    except Exception as e:  # this Triton or GPU rejects it: the caller's reference path runs  # noqa: BLE001
        if key in _ROPE_COMPILED or torch.cuda.is_current_stream_capturing():
            raise
        FAILURES[key] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
        return None
    _ROPE_COMPILED.add(key)
    return q


_ROPE_COMPILED: set[tuple] = set()
