"""`fused_linear`: a layer's matmul with its RMSNorm, scales, bias, GLU and residual in one Triton kernel for
at most MAX_FAST_ROWS rows, where a step is bound by reading the weight and every extra kernel costs a launch,
and for quantized weights up to MAX_FUSED_ROWS (verification of many sequences, short prefills), where the
other path writes and rereads the whole weight dequantized.
Unlike `quant.linear` it rounds x * norm_weight (not x / rms) and scales int8 sums in float32. Split-K
partials are summed in split order by a column block's last program: the same sum on every run."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from specdraft.engine import tuner as tuning
from specdraft.engine.arrivals import arrival_counts
from specdraft.plumbing.names import INT4_GROUP as GROUP

MAX_FAST_ROWS = 16  # one tensor-core tile of rows; more rows of floating weights take the reference path
MAX_FUSED_ROWS = 128  # quantized weights; more rows are compute-bound, where dequantizing once costs little


class Config(NamedTuple):
    block_n: int
    block_k: int
    split_k: int
    num_warps: int
    num_stages: int
    dot: bool = True  # tensor cores over block_m padded rows; False: a GEMV over one row (M = 1 only)
    # The norm inside saves a launch but every program repeats its arithmetic: the tuner decides.
    fuse_norm: bool = True
    block_m: int = 16  # rows a tensor-core program holds; more rows take more programs
    swap: bool = False  # the MMA as W @ x.T: the dequantized weight its register operand (wgmma's first)
    # fuse_norm False: x * norm weight and its squares from one small Triton launch (`norm_prepass`), 1/rms in
    # the epilogue, instead of torch's rms_norm. Tensor cores only: scaling inside slows their loop.
    norm_prepass: bool = False
    # GEMV only: scale, bias and residual read before the loop, off the path from the last sum to the store.
    early_epilogue: bool = False
    # GEMV of int8 or floating weights only: each round's tiles loaded a round early (two rounds in flight).
    loads_ahead: bool = False


# Tensor-core tiles from `benchmarks/linear_kernels.py --sweep`, GEMV forms for one row from
# `benchmarks/gemv_forms.py` (docs/perf/): each the fastest on some decode matrix of the seed's pair.
CANDIDATES = (Config(32, 256, 1, 4, 4), Config(32, 256, 2, 4, 4), Config(128, 128, 1, 8, 4),
              Config(64, 128, 4, 4, 5), Config(64, 256, 1, 4, 4), Config(32, 256, 4, 4, 4),
              Config(64, 256, 1, 4, 3), Config(64, 128, 4, 4, 3),
              Config(4, 1024, 1, 4, 3, dot=False), Config(8, 1024, 1, 4, 2, dot=False),
              Config(8, 1024, 1, 4, 3, dot=False), Config(8, 512, 1, 4, 4, dot=False),
              Config(16, 256, 1, 4, 4, dot=False), Config(4, 2048, 1, 4, 2, dot=False))
# More than MAX_FAST_ROWS rows: GEMM tiles, with split-K where few column blocks would leave SMs idle.
WIDE_CANDIDATES = (Config(64, 128, 1, 4, 4, block_m=32), Config(64, 128, 4, 4, 4, block_m=32),
                   Config(128, 64, 1, 4, 4, block_m=64), Config(64, 128, 2, 4, 4, block_m=64),
                   Config(64, 128, 4, 4, 4, block_m=64), Config(128, 64, 1, 8, 4, block_m=128),
                   Config(64, 64, 1, 4, 4, block_m=128), Config(128, 64, 2, 8, 3, block_m=128),
                   Config(128, 128, 1, 8, 3, block_m=128), Config(64, 128, 2, 4, 3, block_m=128),
                   Config(64, 128, 4, 4, 4, block_m=32, swap=True), Config(128, 128, 2, 8, 3, block_m=32, swap=True),
                   Config(128, 64, 1, 4, 4, block_m=64, swap=True), Config(64, 128, 2, 4, 4, block_m=64, swap=True),
                   Config(128, 64, 1, 8, 4, block_m=128, swap=True), Config(128, 128, 1, 8, 3, block_m=128, swap=True))
CACHE_LINE_BYTES = 128
PREFETCH_TILES = 2  # weight tiles of each program asked for in L2 before it waits for the kernel before it


def tuned_rows(rows: int) -> int:
    """The row count a choice is tuned and stored for: exact up to MAX_FAST_ROWS, then the next power of two
    (a prefill's length varies)."""
    return rows if rows <= MAX_FAST_ROWS else 1 << (rows - 1).bit_length()


def candidates_for(rows: int, norm: bool = False, dtype: torch.dtype | None = None, int4: bool = False,
                   candidates: tuple[Config, ...] | None = None) -> list[Config]:
    """The `candidates` that can run `rows` rows (default: CANDIDATES, or WIDE_CANDIDATES for more than
    MAX_FAST_ROWS, tiles of at most `tuned_rows(rows)`); with a norm, fused and not, and for tensor-core tiles of
    at most MAX_FAST_ROWS rows after a prepass (float16 may overflow inside and after a prepass)."""
    if candidates is None:
        wide = rows > MAX_FAST_ROWS
        candidates = tuple(c for c in WIDE_CANDIDATES if c.block_m <= tuned_rows(rows)) if wide else CANDIDATES
    configs = [c for c in candidates if (c.dot or rows == 1) and not (int4 and c.block_k % GROUP)]
    # The GEMV tiles also with their loads issued early: the epilogue's before the loop, each round's a round ahead.
    configs += [c._replace(early_epilogue=True, loads_ahead=not int4) for c in configs if not c.dot]
    if not norm:
        return configs
    before = [c._replace(fuse_norm=False) for c in configs]
    if dtype == torch.float16:
        return before
    prepass = [c._replace(fuse_norm=False, norm_prepass=True) for c in configs if c.dot and rows <= MAX_FAST_ROWS]
    return configs + before + prepass


def max_rows(scale: Tensor | None) -> int:
    """The most rows `fused_linear` takes: more for quantized weights (those with a scale)."""
    return MAX_FUSED_ROWS if scale is not None else MAX_FAST_ROWS


def launch_linear(config: Config, x: Tensor, w: Tensor, scale: Tensor | None, bias: Tensor | None,
                  residual: Tensor | None, norm_weight: Tensor | None, eps: float, glu: bool, out: Tensor,
                  launch_options: dict | None = None, sum_after: bool | None = None, fast_int8: bool = True,
                  squares: Tensor | None = None) -> None:
    """Launch the kernel with `config` into out [M, N], untuned; x [M, K], the rest as `fused_linear`.
    sum_after, fast_int8: the GEMV form's (`triton_gemv.multiply_add`); sum_after None: after the loop for int8
    weights, every round for the others (docs/performance.md says why; benchmarks/gemv_forms.py sets both).
    squares [M] (float32): x comes scaled by the norm weight (`norm_prepass`); these sums give 1/rms."""
    import triton

    from specdraft.engine import triton_linear

    options = tuning.current().launch.triton_options() if launch_options is None else launch_options
    M, N = out.shape
    int4 = w.dtype == torch.uint8
    K = w.shape[1] * 2 if int4 else w.shape[1]
    if int4 and config.block_k % GROUP:
        raise ValueError(f"{config}: int4 weights need BLOCK_K a multiple of the group size {GROUP}")
    if not (config.dot or M == 1):
        raise ValueError(f"{config} is the one-row GEMV form; got {M} rows")
    if config.loads_ahead and (config.dot or int4):
        raise ValueError(f"{config}: loads_ahead is a form of the GEMV of int8 or floating weights")
    block_m = config.block_m if config.dot else 1
    grid_m = triton.cdiv(M, block_m)
    m_pad = grid_m * block_m
    k_per_split = triton.cdiv(triton.cdiv(K, config.split_k), config.block_k) * config.block_k
    split_k = triton.cdiv(K, k_per_split)  # splits that have any K at all
    halves = 2 if glu else 1
    workspace = (torch.empty((split_k * halves * m_pad * N,), dtype=torch.float32, device=x.device)
                 if split_k > 1 else out)
    grid_n = triton.cdiv(N, config.block_n)
    split_squares = (torch.empty((grid_n * split_k * m_pad,), dtype=torch.float32, device=x.device)
                     if split_k > 1 and norm_weight is not None else out)
    counts = arrival_counts(x.device, grid_n * grid_m) if split_k > 1 else out
    r = residual if residual is not None else out
    dummy = out  # stands in for absent optional pointers (never read: the flags are off)
    if squares is not None and norm_weight is not None:
        raise ValueError("x scaled by a prepass (squares given) takes no norm weight")
    flags = dict(HAS_SCALE=scale is not None and not int4, HAS_BIAS=bias is not None, HAS_RESIDUAL=residual is not None,
                 NORM=norm_weight is not None or squares is not None, NORM_INSIDE=squares is None, GLU=glu,
                 SPLIT_K=split_k,
                 SUM_AFTER=not config.dot and (w.dtype == torch.int8 if sum_after is None else sum_after),
                 FAST_INT8=fast_int8 and not config.dot)
    line_elems = CACHE_LINE_BYTES // w.element_size()  # stored elements (int4: bytes of two values)
    stored_block_k = config.block_k // 2 if int4 else config.block_k
    triton_linear.linear_kernel[(grid_n, split_k, grid_m)](
        x, w, scale if scale is not None else dummy, bias if bias is not None else dummy, r,
        norm_weight if norm_weight is not None else dummy, squares if squares is not None else dummy, out,
        workspace, split_squares, counts, M, m_pad, N, K,
        k_per_split,
        x.stride(0), w.stride(0), scale.stride(0) if int4 else 0, r.stride(0), out.stride(0), eps, **flags,
        INT4=int4, GROUP=GROUP, IEEE=x.dtype == torch.float32,
        DOT=config.dot, SWAP=config.swap and config.dot, BLOCK_M=block_m, BLOCK_N=config.block_n,
        BLOCK_K=config.block_k, EARLY_EPILOGUE=config.early_epilogue and not config.dot,
        LOADS_AHEAD=config.loads_ahead and not config.dot,
        PREFETCH_LINES=max(1, PREFETCH_TILES * stored_block_k // line_elems), LINE_ELEMS=line_elems,
        num_warps=config.num_warps, num_stages=config.num_stages, **options)


def norm_prepass(x: Tensor, norm_weight: Tensor, launch_options: dict | None = None) -> tuple[Tensor, Tensor]:
    """x [M, K] times the norm weight, rounded to x's dtype as `linear_kernel` rounds it inside, and each row's
    sum of squares (float32 [M]): one launch, for a tensor-core matmul that applies 1/rms in its epilogue."""
    import triton

    from specdraft.engine import triton_linear

    options = tuning.current().launch.triton_options() if launch_options is None else launch_options
    M, K = x.shape
    scaled = torch.empty((M, K), dtype=x.dtype, device=x.device)
    squares = torch.empty((M,), dtype=torch.float32, device=x.device)
    block_k = min(triton.next_power_of_2(K), 8192)  # one round for the models' hidden sizes
    triton_linear.norm_prepass_kernel[(M,)](x, norm_weight, scaled, squares, K, x.stride(0), BLOCK_K=block_k,
                                            num_warps=8 if block_k >= 4096 else 4, **options)
    return scaled, squares


def launch_with_norm(config: Config, x: Tensor, w: Tensor, scale: Tensor | None, bias: Tensor | None,
                     residual: Tensor | None, norm_weight: Tensor | None, eps: float, glu: bool, out: Tensor) -> None:
    """`launch_linear` with the norm where `config` places it: inside the kernel, torch's rms_norm before it,
    or `norm_prepass` before it."""
    if config.fuse_norm and config.norm_prepass:
        raise ValueError(f"{config}: the norm runs inside (fuse_norm) or in a prepass (norm_prepass), not both")
    if norm_weight is not None and config.norm_prepass:
        scaled, squares = norm_prepass(x, norm_weight)
        launch_linear(config, scaled, w, scale, bias, residual, None, eps, glu, out, squares=squares)
    elif norm_weight is not None and not config.fuse_norm:
        launch_linear(config, F.rms_norm(x, (x.shape[-1],), norm_weight, eps), w, scale, bias, residual, None, eps,
                      glu, out)
    else:
        launch_linear(config, x, w, scale, bias, residual, norm_weight, eps, glu, out)


def fused_linear(x: Tensor, w: Tensor, scale: Tensor | None = None, bias: Tensor | None = None,
                 residual: Tensor | None = None, norm_weight: Tensor | None = None, eps: float = 1e-6,
                 glu: bool = False, reference: Callable[[], Tensor] | None = None) -> Tensor | None:
    """`quant.linear` as one kernel, x [..., K] of at most `max_rows(scale)` rows -> [..., N]. Returns None
    when the caller's path should run: nothing compiles, or `reference` (its torch path, timed) was faster."""
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
    if M > max_rows(scale):
        raise ValueError(f"fused_linear takes at most {max_rows(scale)} rows "
                         f"({'quantized' if scale is not None else 'floating'} weights), got {M}")
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
        launch_with_norm(config, x2, w, scale, bias, r2, norm_weight, eps, glu, out)

    key = (N, K, tuned_rows(M), x.dtype, w.dtype, bias is not None, residual is not None, norm_weight is not None,
           glu)
    norm = norm_weight is not None
    # Interpreter: one split-K configuration, which covers the reduction.
    config = tuning.current().choice(key, "linear", Config, run, lambda: candidates_for(M, norm, x.dtype, int4),
                                     reference, x.device, fixed=CANDIDATES[1]._replace(fuse_norm=x.dtype != torch.float16))
    if config is tuning.REFERENCE:
        return None
    run(config)
    return out.view(*x.shape[:-1], N)
