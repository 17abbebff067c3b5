"""The native generation engine for Qwen2/Qwen3/Llama: static KV cache, CUDA graphs, batched generation."""

from specdraft.engine.decoder import Decoder, DecoderShape, KVCache
from specdraft.engine.engine import Engine, EngineRows, EngineSession

__all__ = ["Decoder", "DecoderShape", "Engine", "EngineRows", "EngineSession", "KVCache"]
