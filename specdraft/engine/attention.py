"""A step's additive attention mask, and `decode_attention`: split-KV (flash-decoding) attention for few rows."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from specdraft.engine import tuner as tuning
from specdraft.engine.arrivals import arrival_counts


def attention_mask(columns: Tensor, pad: Tensor, kv_len: int, group: int, dtype: torch.dtype) -> Tensor:
    """Additive mask [B, 1, T * group, kv_len] for tokens at `columns` ([1, T] or [B, T]) of rows starting at
    pad [B]: causal, blind to left padding. Every query sees itself so a padding row's softmax is never NaN;
    additive and built once per step, as a boolean mask would be converted in every layer."""
    keys = torch.arange(kv_len, device=columns.device)  # [S]
    causal = keys[None, None, :] <= columns[:, :, None]
    own = keys[None, None, :] == columns[:, :, None]
    allowed = (causal & ((keys[None, None, :] >= pad[:, None, None]) | own))[:, None]  # [B, 1, T, S]
    allowed = allowed.repeat_interleave(group, dim=2)  # [B, 1, T * group, S]
    return torch.zeros(allowed.shape, dtype=dtype, device=columns.device).masked_fill_(~allowed, float("-inf"))



class AttentionConfig(NamedTuple):
    block_n: int  # keys per block (one tl.dot of the padded query rows against them)
    splits: int  # programs per (batch row, KV head), each over a run of key blocks; fewer where blocks are few
    num_warps: int
    num_stages: int


# Few (row, KV head) pairs at batch 1 cannot fill the GPU, so most candidates split the keys.
ATTENTION_CANDIDATES = (AttentionConfig(64, 1, 4, 2), AttentionConfig(64, 2, 4, 2), AttentionConfig(64, 4, 4, 2),
                        AttentionConfig(64, 8, 4, 2), AttentionConfig(32, 8, 4, 2), AttentionConfig(32, 16, 4, 2),
                        AttentionConfig(128, 4, 8, 2), AttentionConfig(64, 16, 4, 2))
# Interpreter (tests): several splits of several blocks, so that the combine and the rescaling both run.
INTERPRETER_ATTENTION = AttentionConfig(16, 4, 4, 2)
MAX_ATTENTION_ROWS = 128  # query rows per KV head in one tile: MAX_GRAPH_TOKENS (16) x a group of up to 8
MAX_ATTENTION_HEAD_DIM = 256


def attention_splits(config: AttentionConfig, kv_len: int) -> tuple[int, int]:
    """(splits that have any key block, key blocks per split) of `config` over kv_len keys."""
    blocks = -(-kv_len // config.block_n)
    per_split = -(-blocks // min(config.splits, blocks))
    return -(-blocks // per_split), per_split


def attention_candidates_for(kv_len: int) -> list[AttentionConfig]:
    """ATTENTION_CANDIDATES with their effective split counts over kv_len keys, duplicates dropped."""
    configs = []
    for config in ATTENTION_CANDIDATES:
        effective = config._replace(splits=attention_splits(config, kv_len)[0])
        if effective not in configs:
            configs.append(effective)
    return configs


def launch_attention(config: AttentionConfig, q: Tensor, k: Tensor, v: Tensor, mask: Tensor, out: Tensor,
                     launch_options: dict | None = None) -> None:
    """The split-KV kernel with `config`, untuned; arguments as `decode_attention`, out [B, nkv, R, hd]."""
    import triton

    from specdraft.engine import triton_attention

    options = tuning.current().launch.triton_options() if launch_options is None else launch_options

    B, nkv, R, head_dim = q.shape
    kv_len = mask.shape[-1]
    splits, per_split = attention_splits(config, kv_len)
    block_d = max(16, triton.next_power_of_2(head_dim))
    if splits > 1:  # float32 partials: the unnormalised output, and each row's max and sum
        acc_ws = torch.empty((B * nkv * splits * R * head_dim,), dtype=torch.float32, device=q.device)
        ml_ws = torch.empty((B * nkv * splits * 2 * R,), dtype=torch.float32, device=q.device)
        counts = arrival_counts(q.device, B * nkv)
    else:
        acc_ws = ml_ws = counts = out  # never touched: the one split writes the output
    triton_attention.decode_attention_kernel[(B * nkv, splits)](
        q, k, v, mask, out, acc_ws, ml_ws, counts, R, kv_len, nkv, head_dim, per_split, head_dim**-0.5, q.stride(0),
        q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2), v.stride(0), v.stride(1), v.stride(2),
        mask.stride(0), mask.stride(2), mask.stride(3), PARTIAL=splits > 1, IEEE=q.dtype == torch.float32,
        BLOCK_R=max(16, triton.next_power_of_2(R)), BLOCK_N=config.block_n, BLOCK_D=block_d,
        num_warps=config.num_warps, num_stages=config.num_stages, **options)


def _sdpa(q: Tensor, k_cache: Tensor, v_cache: Tensor, mask: Tensor) -> Tensor:
    """SDPA as `decoder.layer_step` calls it: the kernel's reference."""
    B, kv_len = q.shape[0], mask.shape[-1]
    return F.scaled_dot_product_attention(q, k_cache[:B, :, :kv_len], v_cache[:B, :, :kv_len], attn_mask=mask)


def decode_attention(q: Tensor, k_cache: Tensor, v_cache: Tensor, mask: Tensor) -> Tensor | None:
    """`_sdpa` as a Triton kernel: q [B, nkv, R, hd] (R = T * group), caches [B_cache, nkv, S_max, hd], mask
    [B or 1, 1, R, S] additive. Returns [B, nkv, R, hd], or None where the caller should run SDPA (layout,
    no compiling configuration, or SDPA timed faster)."""
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

    def run(config: AttentionConfig) -> None:
        launch_attention(config, q, k_cache, v_cache, mask, out)

    config = tuning.current().choice(key, "attention", AttentionConfig, run, lambda: attention_candidates_for(kv_len),
                                     lambda: _sdpa(q, k_cache, v_cache, mask), q.device, fixed=INTERPRETER_ATTENTION)
    if config is tuning.REFERENCE:
        return None
    run(config)
    return out
