"""Random-weight checkpoints of shipped architectures, for the full-size rehearsal with no download. Each tensor has
its own generator seeded by (seed, name): every process gets the same base on one device type, whatever the order."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path

import torch

from specdraft.plumbing.atomic import atomic_path

log = logging.getLogger(__name__)

MODEL_CONFIGS = Path(__file__).parents[1] / "model_configs"
TOKENIZER_DIR = MODEL_CONFIGS / "qwen2.5-tokenizer"
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json")
MARKER = "random_init.json"
# Shape fields a test or a CPU smoke run may scale down; the vocabulary stays the tokenizer's.
OVERRIDABLE = ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
               "intermediate_size")


def shipped_architectures() -> list[str]:
    return sorted(p.parent.name for p in MODEL_CONFIGS.glob("*/config.json"))


def shipped_config(name: str) -> dict:
    """The shipped config.json of `name` (a hub name such as 'Qwen/Qwen2.5-14B-Instruct', or its last part)."""
    short = name.rstrip("/").rsplit("/", 1)[-1]
    path = MODEL_CONFIGS / short / "config.json"
    if not path.is_file():
        raise ValueError(f"models.source 'random' has no shipped architecture {name!r}; "
                         f"allowed: {shipped_architectures()} (with or without the 'Qwen/' prefix)")
    return json.loads(path.read_text())


def write_random_checkpoint(name: str, seed: int, out_dir: str | os.PathLike,
                            overrides: dict[str, int] | None = None) -> None:
    """Write the weightless checkpoint of architecture `name`: config.json, tokenizer, random_init.json."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(OVERRIDABLE))
    if unknown:
        raise ValueError(f"models.random_overrides: unknown key(s) {unknown}; allowed: {list(OVERRIDABLE)}")
    config = {**shipped_config(name), **overrides}
    if config["hidden_size"] % config["num_attention_heads"] or \
            config["num_attention_heads"] % config["num_key_value_heads"]:
        raise ValueError(f"models.random_overrides: hidden_size {config['hidden_size']} must divide into "
                         f"num_attention_heads {config['num_attention_heads']}, and those into "
                         f"num_key_value_heads {config['num_key_value_heads']}")
    with atomic_path(out_dir, directory=True) as tmp:
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        for file in TOKENIZER_FILES:
            shutil.copyfile(TOKENIZER_DIR / file, tmp / file)
        marker = {"architecture": name, "seed": seed, "overrides": overrides}
        (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n")


def is_random_checkpoint(path: str | os.PathLike) -> bool:
    return (Path(path) / MARKER).is_file()


def parameter_seed(seed: int, name: str) -> int:
    """A generator seed for one named tensor: stable across processes, machines and Python versions."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "little") & (2**63 - 1)


@torch.no_grad()
def _draw(name: str, param: torch.Tensor, seed: int, std: float) -> None:
    """Hugging Face's init for Qwen2/Llama: matrices N(0, std), biases zero, norm weights one."""
    if name.endswith(".bias"):
        param.zero_()
    elif param.dim() == 1:
        param.fill_(1.0)
    else:
        generator = torch.Generator(device=param.device).manual_seed(parameter_seed(seed, name))
        param.normal_(0.0, std, generator=generator)


def build_random_model(path: str | os.PathLike, *, dtype: torch.dtype, device: torch.device,
                       quantize_4bit: bool = False, store_on: torch.device | None = None):
    """The model of a random checkpoint, drawn module by module on `device` (then moved to `store_on` if given);
    with `quantize_4bit` the decoder layers' linear layers become NF4 as they are drawn (QLoRA's storage)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    started = time.perf_counter()
    marker = json.loads((Path(path) / MARKER).read_text())
    config = AutoConfig.from_pretrained(str(path))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
    output_layer = model.get_output_embeddings()
    linear_4bit = _nf4_factory(dtype) if quantize_4bit else None
    # Names, not modules: a list of modules would keep every drawn bf16 layer alive after its NF4 replacement.
    for module_name in [name for name, _ in model.named_modules()]:
        module = model.get_submodule(module_name)
        if tied and module is output_layer:
            continue
        own = dict(module.named_parameters(recurse=False))
        if not own:
            continue
        module.to_empty(device=device, recurse=False)
        for name, param in module.named_parameters(recurse=False):
            _draw(f"{module_name}.{name}", param, marker["seed"], config.initializer_range)
        if store_on is not None:
            module.to(store_on)
        if linear_4bit is not None and isinstance(module, torch.nn.Linear) and ".layers." in f".{module_name}":
            parent_name, _, child = module_name.rpartition(".")
            setattr(model.get_submodule(parent_name), child, linear_4bit(module))
            del module  # the drawn bf16 weight is freed here, before the next layer is drawn
    if tied:
        model.tie_weights()
    # Non-persistent buffers (the rotary inverse frequencies) are computed at construction: redo it on device.
    rotary = model.model.rotary_emb
    model.model.rotary_emb = type(rotary)(config=model.config).to(store_on or device)
    leftover = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.device.type == "meta"]
    if leftover:
        raise RuntimeError(f"random model {path}: tensors left unmaterialised: {leftover[:5]}")
    if quantize_4bit:
        model.is_loaded_in_4bit = True  # what TRL and PEFT read to treat the base as quantised (QLoRA)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    log.info("random %s (seed %d%s): %d parameters on %s%s, drawn on %s in %.1f s", marker["architecture"],
             marker["seed"], f", overrides {marker['overrides']}" if marker["overrides"] else "",
             sum(p.numel() for p in model.parameters()), store_on or device,
             ", linear layers NF4" if quantize_4bit else "", device, time.perf_counter() - started)
    return model


class RandomWeights(Mapping):
    """A random checkpoint's tensors by name, each drawn on `device` when asked for as `build_random_model` draws it,
    with no model materialised; `model` is the architecture on the meta device."""

    def __init__(self, path: str | os.PathLike, *, dtype: torch.dtype, device: torch.device):
        from transformers import AutoConfig, AutoModelForCausalLM

        self.marker = json.loads((Path(path) / MARKER).read_text())
        self.config = AutoConfig.from_pretrained(str(path))
        with torch.device("meta"):
            self.model = AutoModelForCausalLM.from_config(self.config, dtype=dtype)
        self.device = device
        self._params = dict(self.model.named_parameters())  # tied weights once, under the embedding's name

    def __getitem__(self, name: str) -> torch.Tensor:
        meta = self._params[name]
        tensor = torch.empty(meta.shape, dtype=meta.dtype, device=self.device)
        _draw(name, tensor, self.marker["seed"], self.config.initializer_range)
        return tensor

    def __contains__(self, name: object) -> bool:  # without drawing it (Mapping's default would)
        return name in self._params

    def __iter__(self):
        return iter(self._params)

    def __len__(self) -> int:
        return len(self._params)


def _nf4_factory(compute_dtype: torch.dtype):
    """A function turning a drawn `nn.Linear` into a bitsandbytes NF4 `Linear4bit` on the same device."""
    bnb = import_bitsandbytes()

    def to_nf4(linear: torch.nn.Linear):
        quantized = bnb.nn.Linear4bit(linear.in_features, linear.out_features, bias=linear.bias is not None,
                                      compute_dtype=compute_dtype, compress_statistics=True, quant_type="nf4",
                                      device="meta")
        quantized.weight = bnb.nn.Params4bit(linear.weight.data, requires_grad=False, compress_statistics=True,
                                             quant_type="nf4").to(linear.weight.device)
        if linear.bias is not None:
            quantized.bias = torch.nn.Parameter(linear.bias.data, requires_grad=False)
        return quantized

    return to_nf4


def import_bitsandbytes():
    """bitsandbytes, or an error that says how to get it (it is an optional dependency)."""
    try:
        import bitsandbytes
    except ImportError as error:
        raise ImportError("train_*.quantization '4bit' needs bitsandbytes (QLoRA's NF4 layers): "
                          "pip install 'specdraft[qlora]' or pip install 'bitsandbytes>=0.45'") from error
    return bitsandbytes
