"""A random base served by the native engine with no model in between: each tensor drawn, padded and LoRA-merged on
the device, bit for bit what the host path gives, with neither a host copy nor a second device copy of the model."""

from __future__ import annotations

import copy
import json
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path

import torch

from specdraft.models.load_timing import PhaseClock

log = logging.getLogger(__name__)

ADAPTER_PREFIX = "base_model.model."
# LoRA options the merge here does not implement; an adapter setting any of them takes the host path (PEFT).
UNSUPPORTED_LORA = ("use_dora", "lora_bias", "modules_to_save", "trainable_token_indices", "rank_pattern",
                    "alpha_pattern", "fan_in_fan_out", "layer_replication", "use_qalora", "alora_invocation_tokens",
                    "use_bdlora", "arrow_config", "target_parameters")


def lora_updates(adapter: str | os.PathLike, device: torch.device) -> tuple[dict, float] | str:
    """({weight name: (A [r, in], B [out, r]) in float32}, scaling) of a plain LoRA adapter, or why PEFT must merge."""
    from safetensors.torch import load_file

    from specdraft.plumbing.artifacts import check_adapter

    check_adapter(adapter)
    directory = Path(adapter)
    if not (directory / "adapter_model.safetensors").is_file():
        return f"{adapter} is not a local safetensors adapter"
    config = json.loads((directory / "adapter_config.json").read_text())
    if config.get("peft_type") != "LORA":
        return f"peft_type {config.get('peft_type')!r}"
    options = [key for key in UNSUPPORTED_LORA if config.get(key) not in (None, False, {}, [], "none")]
    if options:
        return f"LoRA options {options}"
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in load_file(str(directory / "adapter_model.safetensors"), device=str(device)).items():
        module, dot, part = key.removeprefix(ADAPTER_PREFIX).rpartition(".lora_")
        if not (key.startswith(ADAPTER_PREFIX) and dot and part in ("A.weight", "B.weight") and ".layers." in module):
            return f"adapter tensor {key!r}"
        pairs.setdefault(f"{module}.weight", {})[part[0]] = tensor.float()  # as PEFT's autocast_adapter_dtype
    if any(len(pair) != 2 for pair in pairs.values()):
        return "an unpaired lora_A / lora_B tensor"
    r, alpha = config["r"], config["lora_alpha"]
    scaling = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r  # PEFT's LoraLayer.update_layer
    return {name: (pair["A"], pair["B"]) for name, pair in pairs.items()}, scaling


class ServedWeights(Mapping):
    """`base`'s tensors as the host path hands them to the engine: vocabulary rows zero-padded, LoRA merged as PEFT."""

    def __init__(self, base: Mapping[str, torch.Tensor], vocab_size: int | None, updates: dict, scaling: float,
                 clock: PhaseClock):
        self.base, self.vocab_size, self.updates, self.scaling, self.clock = base, vocab_size, updates, scaling, clock

    def __getitem__(self, name: str) -> torch.Tensor:
        with self.clock("draw"):
            tensor = self.base[name]
        if name in ("model.embed_tokens.weight", "lm_head.weight") and self.vocab_size is not None:
            extra = self.vocab_size - tensor.shape[0]
            if extra < 0:
                raise ValueError(f"cannot shrink a vocabulary of {tensor.shape[0]} rows to {self.vocab_size}")
            if extra:
                tensor = torch.cat((tensor, tensor.new_zeros(extra, tensor.shape[1])))
        if name in self.updates:
            with self.clock("LoRA merge"):
                a, b = self.updates[name]
                tensor += (b @ a) * self.scaling
        return tensor

    def __contains__(self, name: object) -> bool:  # without making it (Mapping's default would)
        return name in self.base

    def __iter__(self):
        return iter(self.base)

    def __len__(self) -> int:
        return len(self.base)


def serve_random(base: str, *, adapter: str | None, weights: str, dtype: torch.dtype, device: torch.device,
                 max_seq_len: int, max_batch_size: int, vocab_size: int | None):
    """The native `Engine` built straight from `base`'s draws on `device`, or None where the host path must serve."""
    from specdraft.engine import Engine
    from specdraft.engine.decoder import Decoder
    from specdraft.models.native_support import cache_length, unsupported_features
    from specdraft.models.random_weights import RandomWeights

    clock = PhaseClock(base, device)
    with clock("draw"):
        drawn = RandomWeights(base, dtype=dtype, device=device)
    if unsupported_features(drawn.model):
        return None
    updates, scaling = {}, 1.0
    if adapter is not None:
        with clock("LoRA merge"):
            found = lora_updates(adapter, device)
        if isinstance(found, str):
            log.info("%s: loaded through the host path: the direct merge does not cover %s", base, found)
            return None
        updates, scaling = found
    config = drawn.config
    if vocab_size is not None and vocab_size != config.vocab_size:
        config = copy.deepcopy(config)
        config.vocab_size = vocab_size
        log.info("padded vocabulary from %d to %d rows", drawn.config.vocab_size, vocab_size)
    state = ServedWeights(drawn, vocab_size, updates, scaling, clock)
    inner = ("draw", "LoRA merge")  # timed inside the build, tensor by tensor: charged to their own phases
    before = sum(clock.seconds.get(name, 0.0) for name in inner)
    with clock("engine build"):
        decoder = Decoder.from_state(config, state, dtype=dtype, device=device, weights=weights)
    clock.seconds["engine build"] -= sum(clock.seconds.get(name, 0.0) for name in inner) - before
    clock.report()
    log.info("random %s (seed %d): %s engine built on %s from per-tensor draws, no host copy",
             drawn.marker["architecture"], drawn.marker["seed"], weights, device)
    return Engine(decoder, max_seq_len=cache_length(max_seq_len), max_batch_size=max_batch_size)
