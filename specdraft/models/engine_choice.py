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
    """An `Engine` over `model` ('native', or 'auto' where it implements all the model uses), else `model` itself;
    'native' refuses a model it would serve wrongly. weights: `engine_weights`, which 'hf' ignores."""
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
    """A model as the stages serve it: loaded, padded, `adapter` merged, `serve`d. For a native engine on a GPU the
    model stays in host memory while the engine builds its weights, so the GPU never holds both copies."""
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
