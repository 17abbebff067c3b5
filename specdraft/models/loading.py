"""Loading target and draft models: hub names or local directories, LoRA adapters merged, vocabularies padded."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("models.device is 'cuda' but no CUDA device is available; use 'auto' or 'cpu'")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return DTYPES[dtype]


def load_tokenizer(name_or_path: str | os.PathLike):
    """The shared tokenizer, padding on the left. A local `tokenizer.json` loads as is: beside a `config.json`,
    AutoTokenizer picks the architecture's class, which rebuilds the pre-tokenizer and can split text otherwise."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if (Path(name_or_path) / "tokenizer.json").is_file():
        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(name_or_path))
    else:
        tokenizer = AutoTokenizer.from_pretrained(str(name_or_path))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def pad_vocab(model, vocab_size: int) -> None:
    """Grow the input embedding and output layer to `vocab_size` rows (a draft to its target's), new rows zero."""
    current = model.get_input_embeddings().weight.shape[0]
    if current == vocab_size:
        return
    if current > vocab_size:
        raise ValueError(f"cannot shrink a vocabulary of {current} rows to {vocab_size}")
    model.resize_token_embeddings(vocab_size, mean_resizing=False)
    with torch.no_grad():
        model.get_input_embeddings().weight[current:].zero_()
        output = model.get_output_embeddings()
        if output is not None:
            output.weight[current:].zero_()
    log.info("padded vocabulary from %d to %d rows", current, vocab_size)


def load_causal_lm(name_or_path: str | os.PathLike, *, dtype: torch.dtype, device: torch.device,
                   adapter: str | os.PathLike | None = None, vocab_size: int | None = None, on_host: bool = False):
    """A causal LM in eval mode: base weights, vocabulary padded to `vocab_size`, then `adapter` merged in.
    on_host: keep it in host memory, for the native engine, which builds its own weights on `device`."""
    from specdraft.models.load_timing import PhaseClock

    clock = PhaseClock(str(name_or_path), device)
    with clock("base weights"):
        model = load_base_weights(name_or_path, dtype=dtype, device=device, on_host=on_host)
    if vocab_size is not None:
        with clock("vocabulary padding"):
            pad_vocab(model, vocab_size)
    if adapter is not None:
        with clock("LoRA merge"):
            model = merge_lora(model, adapter, device)
    neutral_generation_config(model)
    with clock("placement"):
        model = model.to("cpu" if on_host else device).eval()
    clock.report()
    return model


def merge_lora(model, adapter: str | os.PathLike, device: torch.device):
    """`model` with the LoRA `adapter` folded in; a host model is merged layer by layer on a GPU `device`."""
    from peft import PeftModel
    from peft.tuners.lora import LoraLayer

    from specdraft.plumbing.artifacts import check_adapter

    check_adapter(adapter)
    peft_model = PeftModel.from_pretrained(model, str(adapter))
    host = next(model.parameters()).device
    if device.type != "cuda" or host.type == "cuda":
        return peft_model.merge_and_unload()
    for module in peft_model.modules():
        if isinstance(module, LoraLayer):
            module.to(device)
            module.merge()
            module.to(host)
    return peft_model.unload()  # the merged base layers, the adapter modules dropped


def load_base_weights(name_or_path: str | os.PathLike, *, dtype: torch.dtype, device: torch.device,
                      quantization: str = "none", on_host: bool = False):
    """A hub, local or random base's weights, placed on `device` as they load (or with `on_host` in host memory).
    quantization: 'none', or '4bit' (bitsandbytes NF4 linear layers, QLoRA)."""
    if on_host and quantization != "none":
        raise ValueError("a quantized base is loaded on its device (bitsandbytes), not in host memory")
    from specdraft.models.random_weights import build_random_model, import_bitsandbytes, is_random_checkpoint

    if quantization not in ("none", "4bit"):
        raise ValueError(f"quantization must be 'none' or '4bit', got {quantization!r}")
    if is_random_checkpoint(name_or_path):
        return build_random_model(name_or_path, dtype=dtype, device=device, quantize_4bit=quantization == "4bit",
                                  store_on=torch.device("cpu") if on_host else None)
    from transformers import AutoModelForCausalLM

    quantization_config = None
    if quantization == "4bit":
        import_bitsandbytes()
        from transformers import BitsAndBytesConfig

        # QLoRA (Dettmers et al. 2023): NF4 storage, double quantisation of the scales, bf16 compute.
        quantization_config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                 bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype)
    return AutoModelForCausalLM.from_pretrained(str(name_or_path), dtype=dtype,
                                                device_map="cpu" if on_host else str(device),
                                                quantization_config=quantization_config)


GENERATION_IDS = ("bos_token_id", "eos_token_id", "pad_token_id")  # all a checkpoint's generation_config keeps
DECODING_SETTINGS = ("do_sample", "temperature", "top_k", "top_p", "min_p", "typical_p", "epsilon_cutoff",
                     "eta_cutoff", "repetition_penalty", "encoder_repetition_penalty", "no_repeat_ngram_size",
                     "length_penalty", "num_beams", "bad_words_ids", "sequence_bias", "suppress_tokens",
                     "begin_suppress_tokens", "forced_bos_token_id", "forced_eos_token_id", "min_length",
                     "min_new_tokens", "max_length", "max_new_tokens")


def neutral_generation_config(model) -> None:
    """Keep only the special token ids of the checkpoint's `generation_config`: `generate` would apply its decoding
    defaults, the native engine does not, and the two engines would decode differently."""
    from transformers import GenerationConfig

    current = model.generation_config
    dropped = {k: v for k, v in current.to_diff_dict().items() if k in DECODING_SETTINGS and v is not None}
    model.generation_config = GenerationConfig(**{k: getattr(current, k, None) for k in GENERATION_IDS})
    if dropped:
        log.info("ignoring the checkpoint's generation defaults %s: decoding uses only the configured "
                 "temperature and top_p", dropped)


def context_length(name_or_path: str | os.PathLike) -> int:
    """The number of positions a model was built for (`max_position_embeddings`), read from its config alone."""
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(name_or_path)).max_position_embeddings


def architecture(name_or_path: str | os.PathLike, vocab_size: int | None = None):
    """The `memory_budget.Architecture` of a model, read from its config alone (rows padded to `vocab_size`)."""
    from transformers import AutoConfig

    from specdraft.plumbing.memory_budget import Architecture

    config = AutoConfig.from_pretrained(str(name_or_path))
    return Architecture.from_config({**config.to_dict(), "head_dim": getattr(config, "head_dim", None)},
                                    vocab_size=vocab_size)


def vocab_size_of(name_or_path: str | os.PathLike) -> int:
    """The number of embedding rows a model has, read from its config alone."""
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(name_or_path)).vocab_size
