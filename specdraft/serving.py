"""Which implementation serves a loaded model: Hugging Face's, or the native engine (`engine` in config)."""

from __future__ import annotations

import math


def serve(model, engine: str, *, max_seq_len: int, max_batch_size: int = 1):
    """`model` itself (engine 'hf'), or an `Engine` over its weights ('native'; 'auto' picks it on a GPU).

    max_seq_len: the longest prompt plus max_new_tokens; rounded up to a multiple of 256 for the cache.
    """
    device = next(model.parameters()).device
    if engine == "hf" or (engine == "auto" and device.type != "cuda"):
        return model
    from specdraft.engine import Engine

    return Engine.from_hf(model, max_seq_len=math.ceil(max_seq_len / 256) * 256, max_batch_size=max_batch_size)
