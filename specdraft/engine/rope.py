"""Rotate-half RoPE with a layer's cache writes: the torch reference and the one-kernel Triton path."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from specdraft.engine import tuner as tuning


def _rope(x: Tensor, cos: Tensor, sin_signed: Tensor) -> Tensor:
    """Rotate-half RoPE: x * cos + rotate_half(x) * sin, with rotate_half(x) * sin = roll(x) * sin_signed."""
    return torch.addcmul(x * cos, x.roll(x.shape[-1] // 2, dims=-1), sin_signed)


def rope_and_cache_reference(qkv: Tensor, cos: Tensor, sin_signed: Tensor, k_cache: Tensor, v_cache: Tensor,
                             columns: Tensor, qk_norm: Tensor | None, eps: float, num_heads: int,
                             num_kv_heads: int) -> Tensor:
    """qkv [B, T, nh + 2 nkv, hd] -> queries [B, nkv, T * group, hd]; keys and values written at `columns`."""
    B, T, _, head_dim = qkv.shape
    group = num_heads // num_kv_heads
    qk = qkv[:, :, : num_heads + num_kv_heads]
    if qk_norm is not None:  # Qwen3 normalises each head before RoPE (weight applied after the cast, as HF does)
        qk = F.rms_norm(qk, (head_dim,), eps=eps) * qk_norm
    qk = _rope(qk, cos[:, :, None], sin_signed[:, :, None])
    q, k, v = qk[:, :, :num_heads], qk[:, :, num_heads:], qkv[:, :, num_heads + num_kv_heads :]
    if columns.shape[0] == 1:  # one start for the whole batch
        k_cache[:B].index_copy_(2, columns[0], k.transpose(1, 2))
        v_cache[:B].index_copy_(2, columns[0], v.transpose(1, 2))
    else:  # ragged rows: row b's tokens go to its own columns
        rows = torch.arange(B, device=qkv.device)[:, None].expand(B, T)
        k_cache[:B][rows, :, columns] = k  # [B, T, nkv, hd]
        v_cache[:B][rows, :, columns] = v
    # GQA without repeating keys: the `group` query heads of one KV head attend as T * group query rows.
    q = q.reshape(B, T, num_kv_heads, group, head_dim).permute(0, 2, 1, 3, 4)
    return q.reshape(B, num_kv_heads, T * group, head_dim)


def rope_and_cache(qkv: Tensor, cos: Tensor, sin_signed: Tensor, k_cache: Tensor, v_cache: Tensor, columns: Tensor,
                   qk_norm: Tensor | None, eps: float, num_heads: int, num_kv_heads: int) -> Tensor | None:
    """`rope_and_cache_reference` as one kernel; None (nothing written) where it does not compile here."""
    import triton

    from specdraft.engine import triton_rope

    B, T, heads, head_dim = qkv.shape
    if qkv.stride(-1) != 1 or qkv.stride(-2) != head_dim or qkv.stride(0) != T * qkv.stride(1):
        qkv = qkv.contiguous()
    cos, sin_signed, columns = cos.contiguous(), sin_signed.contiguous(), columns.contiguous()
    group = num_heads // num_kv_heads
    q = torch.empty((B, num_kv_heads, T * group, head_dim), dtype=qkv.dtype, device=qkv.device)
    col_row_stride = 0 if columns.shape[0] == 1 else columns.stride(0)
    key = ("rope_and_cache", qkv.dtype, qk_norm is not None, head_dim)
    tuner = tuning.current()
    if key in tuner.failures:
        return None
    try:
        triton_rope.rope_and_cache_kernel[(B * T, heads)](
            qkv, cos, sin_signed, qk_norm if qk_norm is not None else cos, columns, q, k_cache, v_cache, T,
            num_heads, num_kv_heads, head_dim, group, qkv.stride(1), col_row_stride, *k_cache.stride()[:3],
            *v_cache.stride()[:3], eps, QK_NORM=qk_norm is not None, BLOCK_D=triton.next_power_of_2(head_dim),
            num_warps=1, **tuner.launch.triton_options())
    except Exception as e:  # this Triton or GPU rejects it: the caller's reference path runs  # noqa: BLE001
        if key in tuner.compiled or torch.cuda.is_current_stream_capturing():
            raise
        tuner.failures[key] = tuning.reason(e)
        return None
    tuner.compiled.add(key)
    return q
