"""Which implementation serves a loaded model: the native engine, or Hugging Face's (`engine` in config)."""

from __future__ import annotations

import math

# Architectures the native engine implements.
NATIVE_MODEL_TYPES = ("qwen2", "qwen3", "llama")


def serve(model, engine: str, *, max_seq_len: int, max_batch_size: int = 1, weights: str = "bf16"):
    """An `Engine` over `model`'s weights ('native'; 'auto' when the architecture is one the engine
    implements), or `model` itself ('hf', or 'auto' for any other architecture).

    max_seq_len: the longest prompt plus max_new_tokens; rounded up to a multiple of 256 for the cache.
    weights: the native engine's weight format (`engine_weights`: 'bf16' or 'int8'); 'hf' ignores it.
    """
    supported = getattr(model.config, "model_type", None) in NATIVE_MODEL_TYPES
    if engine == "hf" or (engine == "auto" and not supported):
        return model
    if not supported:
        raise ValueError(f"engine 'native' serves {list(NATIVE_MODEL_TYPES)} models, not "
                         f"{model.config.model_type!r}; use engine 'hf' or 'auto'")
    from specdraft.engine import Engine

    return Engine.from_hf(model, max_seq_len=math.ceil(max_seq_len / 256) * 256, max_batch_size=max_batch_size,
                          weights=weights)
