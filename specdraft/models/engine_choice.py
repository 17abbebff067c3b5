"""Which implementation serves a loaded model: the native engine, or Hugging Face's (`engine` in config)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from specdraft.models.native_support import (NATIVE_MODEL_TYPES, cache_length, model_type_unsupported,
                                             unsupported_features)

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


def serve(model, engine: str, *, max_seq_len: int, max_batch_size: int = 1, weights: str,
          device: torch.device | None = None):
    """An `Engine` over `model`'s weights ('native'; 'auto' when the engine implements everything the model
    uses), or `model` itself ('hf', or 'auto' for anything else, logged). 'native' refuses a model it would
    serve wrongly.

    max_seq_len: the longest prompt plus max_new_tokens; rounded up to a multiple of 256 for the cache.
    weights: the native engine's weight format (`engine_weights`: 'model_dtype', 'int8' or 'int4'); 'hf' ignores it.
    device: where the engine builds its weights (default: the model's device).
    """
    if engine == "hf":
        return model
    unsupported = unsupported_features(model)
    if unsupported:
        if engine == "native" and model_type_unsupported(model):
            raise ValueError(f"engine 'native' serves {list(NATIVE_MODEL_TYPES)} models, not "
                             f"{model.config.model_type!r}; use engine 'hf' or 'auto'")
        if engine == "native":
            raise ValueError(f"engine 'native' does not implement {', '.join(unsupported)}; "
                             f"use engine 'hf' or 'auto'")
        log.warning("engine auto: the native engine does not implement %s; serving with Hugging Face instead",
                    ", ".join(unsupported))
        return model
    from specdraft.engine import Engine

    return Engine.from_hf(model, max_seq_len=cache_length(max_seq_len), max_batch_size=max_batch_size,
                          weights=weights, device=device)


def load_served(base: str, *, adapter: str | None, engine: str, weights: str, dtype: str, device: str,
                max_seq_len: int, max_batch_size: int = 1, vocab_size: int | None = None):
    """A model as the workflow's stages serve it: loaded, vocabulary padded to `vocab_size`, `adapter` merged,
    then `serve`d by `engine` with `weights` on `device` (see `serve`).

    On a GPU with an engine that may be native, the Hugging Face model is loaded into host memory and the
    engine builds its weights on the GPU from it, matrix by matrix (fused, and quantized with 'int8' or
    'int4'): the GPU never holds the model and the engine's copy at once, so the bf16 14B needs its 29.5 GB
    once, not twice, and the int8 14B needs 15 GB, not 29.5 + 15. A model the engine does not serve then
    moves to the GPU. A random base (`models.source: random`) skips the Hugging Face model: each tensor is
    drawn on `device` and built into the engine there (`direct_load.serve_random`), on any device.
    """
    from specdraft.models.load_timing import phase
    from specdraft.models.loading import load_causal_lm, resolve_device, resolve_dtype
    from specdraft.models.random_weights import is_random_checkpoint

    dev = resolve_device(device)
    if engine != "hf" and is_random_checkpoint(base):
        from specdraft.models.direct_load import serve_random

        served = serve_random(base, adapter=adapter, weights=weights, dtype=resolve_dtype(dtype, dev), device=dev,
                              max_seq_len=max_seq_len, max_batch_size=max_batch_size, vocab_size=vocab_size)
        if served is not None:
            return served
    on_host = engine != "hf" and dev.type == "cuda"
    model = load_causal_lm(base, dtype=resolve_dtype(dtype, dev), device=dev, adapter=adapter, vocab_size=vocab_size,
                           on_host=on_host)
    with phase(base, "engine build", dev):
        served = serve(model, engine, max_seq_len=max_seq_len, max_batch_size=max_batch_size, weights=weights,
                       device=dev)
    return model.to(dev) if served is model else served
