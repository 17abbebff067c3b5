"""Triton kernels for the decode path on a CUDA device (imported only there; the CPU path never needs Triton).

`fused_linear`: a layer's matmul with its neighbours folded in, for at most MAX_FAST_ROWS rows (a decode
step, a verification, a batch of a few rows). A step at these sizes is bound by reading the weight, and in
a CUDA graph every extra kernel costs a few microseconds of launch and tail whatever its size
(docs/performance.md's profile), so one kernel does: an optional RMSNorm of the input (the norm weight is
applied to each input tile and the row's sum of squares is gathered from the same tiles, so the 1/rms
multiplies the sums afterwards and no pass over the row precedes the weight loads), the product with an
int8 weight (per-output-channel scales, converted in registers: a quarter of the float32 bytes, half of
bf16's), a packed int4 one (two values a byte, a scale per 128 columns of K applied to each tile in
registers before the multiply: a quarter of bf16's bytes) or a floating one, the bias, SiLU(gate) * up for
a [gate; up] weight (GLU), and the residual add.
Rounding differs from the reference (`quant.linear`, which prefills run) in two places: the reference rounds
x / rms before the norm weight multiplies it, the kernel rounds x * weight and divides the sums by rms (so
the fused norm is not offered for float16, where x * weight can overflow); and with int8 weights the reference
multiplies by the dequantized weight rounded to the activations' dtype, the kernel scales the float32 sums
(int4 weights are dequantized with the reference's rounding, so only the order of the sums differs).

Small N gives too few programs to keep every SM reading, so K may be split across SPLIT_K programs whose
float32 partial sums (and partial sums of squares) a second small kernel adds up in a fixed order before
the epilogue. Each (shape, fusion) is tuned on first use: every candidate configuration, and for floating
weights the reference path (cuBLAS and torch's own kernels) too, is timed one launch at a time with L2
scrubbed before each launch (a decode step finds its weights in HBM, not in L2), and the fastest is kept.
A candidate that fails to compile is skipped; if none runs, the caller's reference path runs (FAILURES
says why). Triton's interpreter (TRITON_INTERPRET=1) runs the kernels on a CPU, for tests.

`rope_and_cache`: a layer's per-head norm, RoPE and cache writes in one kernel. `decode_attention`: a
step's attention over the static cache for few query rows (a decode step, a verification, a proposal),
where SDPA runs a prefill kernel: flash-decoding, the attended keys split over several programs per
(batch row, KV head) so that batch 1 fills the GPU, each an online softmax over its key blocks for all of a
KV head's query rows at once, and a second small kernel combining the splits in a fixed order. Tuned per
shape as `fused_linear` is, against SDPA.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from specdraft.engine.quant import GROUP
from specdraft.engine.timing import median_ms

MAX_FAST_ROWS = 16  # one tensor-core tile of rows; more rows (prefills) take the reference path
FAILURES: dict[tuple, str] = {}  # tuning key -> why no candidate ran


class Config(NamedTuple):
    block_n: int
    block_k: int
    split_k: int
    num_warps: int
    num_stages: int
    dot: bool = True  # tensor cores over 16 padded rows; False: a GEMV over one row (M = 1 only)
    # With an RMSNorm input: inside the kernel, or torch's norm kernel first. Inside saves a launch but
    # every program repeats the norm's arithmetic (on 16 padded rows for the tensor-core form): measured
    # on the H200 it wins for the draft's small matrices and loses for the lm-heads, so the tuner decides.
    fuse_norm: bool = True


# The winners of `benchmarks/linear_kernels.py --sweep` on the H200 (docs/perf/h200_linear_sweep_*.json) over the
# seed's matrices, M = 1 and 6: tensor-core tiles for the 14B's matrices and every lm-head, the GEMV form for
# the draft's small one-row matrices.
CANDIDATES = (Config(32, 256, 1, 4, 4), Config(32, 256, 2, 4, 4), Config(128, 128, 1, 8, 4),
              Config(64, 128, 4, 4, 5), Config(64, 256, 1, 4, 4), Config(32, 256, 4, 4, 4),
              Config(4, 1024, 1, 4, 3, dot=False), Config(8, 1024, 1, 4, 2, dot=False))
REFERENCE = None  # the tuned choice meaning "the torch path was fastest"


def candidates_for(rows: int, norm: bool = False, dtype: torch.dtype | None = None,
                   int4: bool = False) -> list[Config]:
    """The candidate configurations that can run `rows` rows (the GEMV form takes one) and, for int4 weights,
    whose K tiles hold whole groups of scales; with an RMSNorm input, each both with the norm inside the
    kernel and before it (before only, in float16)."""
    configs = [c for c in CANDIDATES if (c.dot or rows == 1) and not (int4 and c.block_k % GROUP)]
    if not norm:
        return configs
    before = [c._replace(fuse_norm=False) for c in configs]
    return before if dtype == torch.float16 else configs + before


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
def pdl_supported() -> bool:
    """Whether this GPU and Triton can launch the kernels with programmatic dependent launch (Hopper and
    later, Triton 3.4 and later; not under the interpreter, nor with SPECDRAFT_NO_PDL=1)."""
    if _interpreting() or os.environ.get("SPECDRAFT_NO_PDL") or not torch.cuda.is_available():
        return False
    from specdraft.engine import _triton_kernels

    return _triton_kernels.HAS_GRID_DEPENDENCY_CONTROL and torch.cuda.get_device_capability()[0] >= 9


_PDL = [False]  # launches inside `dependent_launches(True)`: the innermost setting


def pdl() -> bool:
    """Whether kernels launched now use programmatic dependent launch: each then starts while the one
    before it finishes, its launch and, for `fused_linear`, the first reads of its weight hidden behind
    that kernel's last programs, and waits for that kernel's writes before reading its input
    (`_triton_kernels.wait_for_previous_kernel`). Only inside `dependent_launches(True)`, which the runner
    offers to draft proposals (`runner._Graph`); plain launches elsewhere."""
    return _PDL[-1]


@contextlib.contextmanager
def dependent_launches(on: bool):
    """Launch the kernels with programmatic dependent launch inside (where `pdl_supported`), or plainly."""
    _PDL.append(on and pdl_supported())
    try:
        yield
    finally:
        _PDL.pop()


def _pdl_options() -> dict:
    return dict(PDL=True, launch_pdl=True) if pdl() else {}


CACHE_LINE_BYTES = 128
PREFETCH_TILES = 2  # weight tiles of each program asked for in L2 before it waits for the kernel before it


def _reason(error: Exception) -> str:
    """Why a kernel did not compile or run, in one line (for FAILURES)."""
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:300]


@functools.cache
def _kernels():
    from specdraft.engine import _triton_kernels

    return _triton_kernels.linear_kernel, _triton_kernels.split_k_epilogue


_tuned: dict[tuple, Config | None] = {}


def tuned_configs() -> dict[tuple, Config | None]:
    """The configuration each kernel shape was tuned to on first use (None: the torch path), a copy."""
    return dict(_tuned)


def _launch(config: Config, x: Tensor, w: Tensor, scale: Tensor | None, bias: Tensor | None,
            residual: Tensor | None, norm_weight: Tensor | None, eps: float, glu: bool, out: Tensor) -> None:
    import triton

    main, epilogue = _kernels()
    M, N = out.shape
    int4 = w.dtype == torch.uint8
    K = w.shape[1] * 2 if int4 else w.shape[1]
    if int4 and config.block_k % GROUP:
        raise ValueError(f"{config}: int4 weights need BLOCK_K a multiple of the group size {GROUP}")
    if not (config.dot or M == 1):
        raise ValueError(f"{config} is the one-row GEMV form; got {M} rows")
    block_m = 16 if config.dot else 1
    k_per_split = triton.cdiv(triton.cdiv(K, config.split_k), config.block_k) * config.block_k
    split_k = triton.cdiv(K, k_per_split)  # splits that have any K at all
    halves = 2 if glu else 1
    workspace = (torch.empty((split_k * halves * block_m * N,), dtype=torch.float32, device=x.device)
                 if split_k > 1 else out)
    squares = (torch.empty((split_k * block_m,), dtype=torch.float32, device=x.device)
               if split_k > 1 and norm_weight is not None else out)
    r = residual if residual is not None else out
    dummy = out  # stands in for absent optional pointers (never read: the flags are off)
    flags = dict(HAS_SCALE=scale is not None and not int4, HAS_BIAS=bias is not None, HAS_RESIDUAL=residual is not None,
                 NORM=norm_weight is not None, GLU=glu, SPLIT_K=split_k)
    line_elems = CACHE_LINE_BYTES // w.element_size()  # stored elements (int4: bytes of two values)
    stored_block_k = config.block_k // 2 if int4 else config.block_k
    main[(triton.cdiv(N, config.block_n), split_k)](
        x, w, scale if scale is not None else dummy, bias if bias is not None else dummy, r,
        norm_weight if norm_weight is not None else dummy, out, workspace, squares, M, N, K, k_per_split,
        x.stride(0), w.stride(0), scale.stride(0) if int4 else 0, r.stride(0), out.stride(0), eps, **flags,
        INT4=int4, GROUP=GROUP, IEEE=x.dtype == torch.float32,
        DOT=config.dot, BLOCK_M=block_m, BLOCK_N=config.block_n, BLOCK_K=config.block_k,
        PREFETCH_LINES=max(1, PREFETCH_TILES * stored_block_k // line_elems), LINE_ELEMS=line_elems,
        num_warps=config.num_warps, num_stages=config.num_stages, **_pdl_options())
    if split_k > 1:
        epilogue[(triton.cdiv(N, 128),)](
            workspace, squares, scale if scale is not None else dummy, bias if bias is not None else dummy, r, out,
            M, N, K, r.stride(0), out.stride(0), eps, **flags, BLOCK_M=block_m, BLOCK_N=128, num_warps=4,
            **_pdl_options())


@functools.cache
def _scrub_buffer(device: torch.device) -> Tensor:
    """More bytes than the GPU's L2 (50 MiB on an H100/H200): writing it evicts a matrix from L2. A normal
    tensor even when first asked for under inference mode, so that tuning outside it may write it too."""
    with torch.inference_mode(False):
        return torch.empty(256 * 1024**2, dtype=torch.uint8, device=device)


def _time_ms(run: Callable[[], object], device: torch.device, repeats: int = 10) -> float:
    """Median milliseconds of one launch of `run`, L2 scrubbed before each (CUDA events around the launch).
    A spin kernel before the first event keeps the GPU busy while the host launches `run` (a Triton launch
    costs tens of microseconds of Python), so the events time the GPU's work, not the host's."""
    scrub = _scrub_buffer(device)

    def before() -> None:
        scrub.zero_()
        torch.cuda._sleep(200_000)  # ~0.1 ms at the H200's clock: longer than launching `run`

    return median_ms(run, repeats, before)


def _tune(key: tuple, run: Callable[[Config], None], rows: int, norm: bool, reference: Callable[[], object] | None,
          device: torch.device, dtype: torch.dtype | None = None, int4: bool = False) -> Config | None:
    """The fastest candidate for `key` (`_fastest`; `reference` is given for floating weights), or under
    the interpreter a fixed one."""
    if _interpreting():  # one split-K configuration: the interpreter is slow, and it covers both kernels
        return CANDIDATES[1]._replace(fuse_norm=dtype != torch.float16)
    return _fastest(key, candidates_for(rows, norm, dtype, int4), run, reference, device)


def _choose(key: tuple, make: type, run: Callable, tune: Callable[[], object]):
    """The configuration for `key`: the one stored in a tuning table (`tuning_table.lookup`) where it still
    runs here, else `tune()`'s choice, which is then stored in this machine's table."""
    if _interpreting():
        return tune()
    _refuse_during_capture(key)  # neither a stored choice's first run nor tuning may be captured
    from specdraft.engine import tuning_table

    stored = tuning_table.lookup(key)
    if stored is not tuning_table.MISSING:
        if stored is None:
            return REFERENCE
        try:
            config = make(**stored)
            run(config)  # compiles it
            torch.cuda.synchronize()  # and runs it
            return config
        except Exception as e:  # a stale or foreign entry: tune afresh  # noqa: BLE001
            logging.getLogger(__name__).warning("stored kernel choice %s for %s does not run here (%s): tuning "
                                                "it again", stored, key, _reason(e))
    choice = tune()
    if key not in FAILURES:  # a shape where nothing compiled is tried again in the next process
        tuning_table.record(key, None if choice is REFERENCE else choice._asdict())
    return choice


def _refuse_during_capture(key: tuple) -> None:
    if torch.cuda.is_current_stream_capturing():  # timing and compiling cannot happen inside a graph
        raise RuntimeError(f"a Triton kernel met the shape {key} for the first time during CUDA-graph capture; run "
                           "the step once before capturing it (the runner's warm-up run does)")


def _fastest(key: tuple, candidates: list, run: Callable, reference: Callable[[], object] | None,
             device: torch.device):
    """The candidate configuration for which run(config) is fastest, or REFERENCE when `reference` (timed
    too where given) beats every one. None of them compiling also gives REFERENCE, and FAILURES[key] says why."""
    started = time.perf_counter()
    best, best_ms, errors = REFERENCE, float("inf"), []
    if reference is not None:
        reference()
        best_ms = _time_ms(reference, device)
    for config in candidates:
        try:
            run(config)  # compiles
            torch.cuda.synchronize()
        except Exception as e:  # a candidate this Triton or GPU rejects: try the next  # noqa: BLE001
            errors.append(f"{config}: {_reason(e)}")
            continue
        if (ms := _time_ms(lambda: run(config), device)) < best_ms:
            best, best_ms = config, ms
    if len(errors) == len(candidates):  # no configuration compiled: the torch path runs
        FAILURES[key] = "; ".join(errors)
    _TUNING[key] = time.perf_counter() - started
    return best


_TUNING: dict[tuple, float] = {}  # tuning key -> seconds spent choosing its configuration (compiling included)


def tuning_seconds() -> float:
    """Seconds spent so far in this process choosing kernel configurations: compiling every candidate and
    timing it (part of an engine's start-up)."""
    return sum(_TUNING.values())


def tuned_shapes() -> list[tuple]:
    """The kernel keys tuned afresh in this process (no tuning table held a choice that runs here)."""
    return list(_TUNING)


def fused_linear(x: Tensor, w: Tensor, scale: Tensor | None = None, bias: Tensor | None = None,
                 residual: Tensor | None = None, norm_weight: Tensor | None = None, eps: float = 1e-6,
                 glu: bool = False, reference: Callable[[], Tensor] | None = None) -> Tensor | None:
    """`quant.linear` as one kernel (two with split-K): residual + f(a @ W.T + bias) with a = x or
    rms_norm(x) * norm_weight, W = w (floating), w * scale[:, None] (int8 w, scale [N']) or
    `quant.dequantize_int4(w, scale)` (uint8 w: packed int4 [N', K / 2], scale [N', K / GROUP]), f = identity, or
    silu(gate) * up over the two halves of W's N' = 2N rows (glu). x: [..., K], at most MAX_FAST_ROWS rows;
    residual: [..., N]. Returns [..., N] in x's dtype, or None when the caller's reference path should run:
    no configuration compiles here, or (floating weights: pass `reference`, the caller's torch path as a
    zero-argument function, to be timed against the kernel) the torch path was the faster one."""
    N = w.shape[0] // 2 if glu else w.shape[0]
    int4 = w.dtype == torch.uint8
    K = w.shape[1] * 2 if int4 else w.shape[1]
    if int4 and (K % GROUP or scale is None or scale.shape != (w.shape[0], K // GROUP) or scale.stride(-1) != 1):
        raise ValueError(f"packed int4 weight [{w.shape[0]}, {w.shape[1]}] needs K = {K} a multiple of {GROUP} and "
                         f"contiguous scales [{w.shape[0]}, {K // GROUP}], got "
                         f"{None if scale is None else tuple(scale.shape)}")
    x2 = x.reshape(-1, x.shape[-1])
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    M = x2.shape[0]
    if M > MAX_FAST_ROWS:
        raise ValueError(f"fused_linear takes at most {MAX_FAST_ROWS} rows, got {M}")
    if x2.shape[1] != K:
        raise ValueError(f"x has {x2.shape[1]} columns; the weight takes {K}")
    if glu and residual is not None:
        raise ValueError("glu and residual do not combine (a layer adds its residual after the down projection)")
    if glu and w.shape[0] % 2:
        raise ValueError(f"a glu weight stacks gate and up rows: an even number, got {w.shape[0]}")
    out = torch.empty((M, N), dtype=x.dtype, device=x.device)
    r2 = None
    if residual is not None:
        r2 = residual.reshape(-1, N)
        if r2.stride(-1) != 1:
            r2 = r2.contiguous()

    def run(config: Config) -> None:
        if norm_weight is not None and not config.fuse_norm:
            _launch(config, F.rms_norm(x2, (K,), norm_weight, eps), w, scale, bias, r2, None, eps, glu, out)
        else:
            _launch(config, x2, w, scale, bias, r2, norm_weight, eps, glu, out)

    key = (N, K, M, x.dtype, w.dtype, bias is not None, residual is not None, norm_weight is not None, glu)
    if key not in _tuned:
        _tuned[key] = _choose(key, Config, run, lambda: _tune(key, run, M, norm_weight is not None, reference,
                                                                x.device, x.dtype, int4))
    config = _tuned[key]
    if config is REFERENCE:
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
            num_warps=1, **_pdl_options())
    except Exception as e:  # this Triton or GPU rejects it: the caller's reference path runs  # noqa: BLE001
        if key in _ROPE_COMPILED or torch.cuda.is_current_stream_capturing():
            raise
        FAILURES[key] = _reason(e)
        return None
    _ROPE_COMPILED.add(key)
    return q


_ROPE_COMPILED: set[tuple] = set()


class AttentionConfig(NamedTuple):
    block_n: int  # keys per block (one tl.dot of the padded query rows against them)
    splits: int  # programs per (batch row, KV head), each over a run of key blocks; fewer where blocks are few
    num_warps: int
    num_stages: int


# Batch 1 has B * nkv = 8 (14B) or 2 (0.5B draft) (row, KV head) pairs for the H200's 132 SMs, so most
# candidates split the keys; large batches fill the GPU without splitting.
ATTENTION_CANDIDATES = (AttentionConfig(64, 1, 4, 2), AttentionConfig(64, 2, 4, 2), AttentionConfig(64, 4, 4, 2),
                        AttentionConfig(64, 8, 4, 2), AttentionConfig(32, 8, 4, 2), AttentionConfig(32, 16, 4, 2),
                        AttentionConfig(128, 4, 8, 2), AttentionConfig(64, 16, 4, 2))
# Under the interpreter (tests): 4 splits of 2 blocks over 128 keys, so that both kernels run and a split
# rescales its sums from block to block.
INTERPRETER_ATTENTION = AttentionConfig(16, 4, 4, 2)
MAX_ATTENTION_ROWS = 128  # query rows per KV head in one tile: MAX_GRAPH_TOKENS (16) x a group of up to 8
MAX_ATTENTION_HEAD_DIM = 256


def attention_splits(config: AttentionConfig, kv_len: int) -> tuple[int, int]:
    """(splits that have any key block, key blocks per split) of `config` over kv_len keys."""
    blocks = -(-kv_len // config.block_n)
    per_split = -(-blocks // min(config.splits, blocks))
    return -(-blocks // per_split), per_split


def attention_candidates_for(kv_len: int) -> list[AttentionConfig]:
    """ATTENTION_CANDIDATES with their split counts as they run over kv_len keys, duplicates dropped (8
    splits of 4 blocks are 4 splits)."""
    configs = []
    for config in ATTENTION_CANDIDATES:
        effective = config._replace(splits=attention_splits(config, kv_len)[0])
        if effective not in configs:
            configs.append(effective)
    return configs


def _attention_launch(config: AttentionConfig, q: Tensor, k: Tensor, v: Tensor, mask: Tensor, out: Tensor) -> None:
    """decode_attention_kernel (and, over several splits, its combine kernel) with `config`."""
    import triton

    from specdraft.engine import _triton_kernels

    B, nkv, R, head_dim = q.shape
    kv_len = mask.shape[-1]
    splits, per_split = attention_splits(config, kv_len)
    block_d = max(16, triton.next_power_of_2(head_dim))
    if splits > 1:  # float32 partials: the unnormalised output, and each row's max and sum
        acc_ws = torch.empty((B * nkv * splits * R * head_dim,), dtype=torch.float32, device=q.device)
        ml_ws = torch.empty((B * nkv * splits * 2 * R,), dtype=torch.float32, device=q.device)
    else:
        acc_ws = ml_ws = out  # never touched: the one split writes the output
    _triton_kernels.decode_attention_kernel[(B * nkv, splits)](
        q, k, v, mask, out, acc_ws, ml_ws, R, kv_len, nkv, head_dim, per_split, head_dim**-0.5, q.stride(0),
        q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2), v.stride(0), v.stride(1), v.stride(2),
        mask.stride(0), mask.stride(2), mask.stride(3), PARTIAL=splits > 1, IEEE=q.dtype == torch.float32,
        BLOCK_R=max(16, triton.next_power_of_2(R)), BLOCK_N=config.block_n, BLOCK_D=block_d,
        num_warps=config.num_warps, num_stages=config.num_stages, **_pdl_options())
    if splits > 1:
        _triton_kernels.decode_attention_combine[(B * nkv, triton.cdiv(R, 16))](
            acc_ws, ml_ws, out, R, head_dim, splits, BLOCK_R=16, BLOCK_D=block_d, num_warps=4, **_pdl_options())


def _sdpa(q: Tensor, k_cache: Tensor, v_cache: Tensor, mask: Tensor) -> Tensor:
    """Attention as `decoder.layer_step` calls torch for it: what the kernel computes and is timed against."""
    B, kv_len = q.shape[0], mask.shape[-1]
    return F.scaled_dot_product_attention(q, k_cache[:B, :, :kv_len], v_cache[:B, :, :kv_len], attn_mask=mask)


def decode_attention(q: Tensor, k_cache: Tensor, v_cache: Tensor, mask: Tensor) -> Tensor | None:
    """`F.scaled_dot_product_attention(q, k_cache[:B, :, :S], v_cache[:B, :, :S], attn_mask=mask)` for a
    step of few query rows, as split-KV (flash-decoding) Triton kernels: q [B, nkv, R, hd] (R = T * group:
    each KV head's query heads as rows, `decoder.layer_step`'s layout), the caches [B_cache >= B, nkv,
    S_max, hd], mask [B or 1, 1, R, S] additive (S = kv_len columns attended; each row needs a finite one).
    Returns [B, nkv, R, hd] in q's dtype (softmax in float32), or None where the caller should run SDPA:
    more than MAX_ATTENTION_ROWS rows or an unusual layout, no configuration compiles here, or SDPA timed
    faster for this shape on first use."""
    B, nkv, R, head_dim = q.shape
    kv_len = mask.shape[-1]
    if (R > MAX_ATTENTION_ROWS or head_dim > MAX_ATTENTION_HEAD_DIM or mask.dim() != 4 or mask.shape[1] != 1
            or mask.shape[2] != R or mask.shape[0] not in (1, B) or not mask.dtype.is_floating_point
            or kv_len > k_cache.shape[2] or k_cache.shape[0] < B or k_cache.shape[1:2] != (nkv,)
            or k_cache.shape != v_cache.shape or k_cache.shape[-1] != head_dim
            or not (q.dtype == k_cache.dtype == v_cache.dtype)
            or k_cache.stride(-1) != 1 or v_cache.stride(-1) != 1):
        return None
    if q.stride(-1) != 1:
        q = q.contiguous()
    mask = mask.expand(B, 1, R, kv_len)  # a mask shared by the batch: stride 0
    out = torch.empty((B, nkv, R, head_dim), dtype=q.dtype, device=q.device)
    key = ("decode_attention", B, nkv, R, head_dim, kv_len, q.dtype)
    if key not in _tuned:
        def run(config: AttentionConfig) -> None:
            _attention_launch(config, q, k_cache, v_cache, mask, out)

        _tuned[key] = _choose(key, AttentionConfig, run, lambda: _tune_attention(
            key, run, lambda: _sdpa(q, k_cache, v_cache, mask), kv_len, q.device))
    config = _tuned[key]
    if config is REFERENCE:
        return None
    _attention_launch(config, q, k_cache, v_cache, mask, out)
    return out


def _tune_attention(key: tuple, run: Callable[[AttentionConfig], None], reference: Callable[[], object],
                    kv_len: int, device: torch.device) -> AttentionConfig | None:
    """The fastest of `attention_candidates_for(kv_len)` and SDPA (`_fastest`), or under the interpreter one
    configuration that splits the keys (so that both kernels run)."""
    if _interpreting():
        return INTERPRETER_ATTENTION
    return _fastest(key, attention_candidates_for(kv_len), run, reference, device)

