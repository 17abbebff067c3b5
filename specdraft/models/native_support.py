"""What the native engine serves: the architectures and features it implements, and its KV cache's length."""

from __future__ import annotations

import math

NATIVE_MODEL_TYPES = ("qwen2", "qwen3", "llama")


def unsupported_features(model) -> list[str]:
    """What in `model` the native engine does not implement (empty: served exactly); anything listed would be
    served wrongly, not slowly."""
    config = model.config
    found = []
    if model_type_unsupported(model):
        found.append(f"the {config.model_type!r} architecture")
    # transformers 5 keeps RoPE settings in rope_parameters, 4.x in rope_scaling ('type' before 4.45)
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type != "default":
        found.append(f"RoPE scaling {rope_type!r}")
    names = [name for name, _ in model.named_parameters()]
    if any(name.endswith("self_attn.o_proj.bias") for name in names):
        found.append("a bias on o_proj")
    if any(".mlp." in name and name.endswith(".bias") for name in names):
        found.append("biases in the MLP")
    if getattr(config, "use_sliding_window", False) and getattr(config, "sliding_window", None):
        found.append("sliding-window attention")
    return found


def model_type_unsupported(model) -> bool:
    return getattr(model.config, "model_type", None) not in NATIVE_MODEL_TYPES


CACHE_BLOCK = 256  # the KV cache's length is a multiple of this (the runner's attention buckets)


def cache_length(max_seq_len: int) -> int:
    """The positions the engine's KV cache holds for sequences of up to `max_seq_len`."""
    return math.ceil(max_seq_len / CACHE_BLOCK) * CACHE_BLOCK
