"""The merge stage: a tuned model as a plain Hugging Face checkpoint (loaded by transformers or vLLM without PEFT),
a QLoRA adapter into the full-precision base, the draft's vocabulary padded to the target's."""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from specdraft.plumbing.artifacts import check_json, check_safetensors
from specdraft.plumbing.atomic import atomic_path
from specdraft.models.loading import (load_base_weights, load_causal_lm, load_tokenizer, pad_vocab, resolve_device,
                              resolve_dtype, vocab_size_of)

log = logging.getLogger(__name__)

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")
# Largest relative logit difference rounding explains: the merge rounds W + BA once, the adapter computes them apart.
TOLERANCE = {torch.float32: 1e-4, torch.float16: 2e-2, torch.bfloat16: 5e-2}
# Merged vs unmerged distance to a higher-precision reference: deep nets amplify rounding past fixed tolerances.
REFERENCE_FACTOR = 2.0


def merge_adapter(base: str | os.PathLike, adapter: str | os.PathLike, out_dir: str | os.PathLike, *,
                  dtype: str, device: str, vocab_of: str | os.PathLike | None = None) -> None:
    """Write `base` with `adapter` merged, and the tokenizer, to `out_dir`, padded to `vocab_of`'s vocabulary."""
    dev = resolve_device(device)
    vocab_size = vocab_size_of(vocab_of) if vocab_of is not None else None
    model = load_causal_lm(base, dtype=resolve_dtype(dtype, dev), device=dev, adapter=adapter,
                           vocab_size=vocab_size, on_host=dev.type == "cuda")
    tokenizer = load_tokenizer(adapter)
    with atomic_path(out_dir, directory=True) as tmp:
        # Each shard passes through host memory whole: bounded shards keep the merge within the rule's mem_mb.
        model.save_pretrained(tmp, max_shard_size="5GB")
        tokenizer.save_pretrained(tmp)
    log.info("merged %s into %s (%d vocabulary rows) -> %s", adapter, base, model.config.vocab_size, out_dir)


@dataclass(frozen=True)
class MergeCheck:
    """How the merged checkpoint's logits compare with the adapter model's, over `num_prompts` prompts."""

    max_abs_diff: float  # merged vs adapter model
    adapter_effect: float  # adapter model vs the base alone: what the merge had to carry
    max_abs_logit: float
    tolerance: float  # relative to max_abs_logit
    num_prompts: int
    files: tuple[str, ...]
    reference_dtype: str | None = None  # the adapter model once more in this dtype: the yardstick of both
    merged_vs_reference: float | None = None
    adapter_vs_reference: float | None = None  # the dtype's own noise, unmerged

    @property
    def passed(self) -> bool:
        if self.reference_dtype is None:
            return self.max_abs_diff <= self.tolerance * self.max_abs_logit
        return self.merged_vs_reference <= REFERENCE_FACTOR * self.adapter_vs_reference

    def as_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def check_layout(merged_dir: str | os.PathLike) -> tuple[str, ...]:
    """The merged directory's files, once checked to be a plain checkpoint: config, shards, tokenizer, no adapter."""
    merged_dir = Path(merged_dir)
    files = tuple(sorted(p.name for p in merged_dir.iterdir()))
    problems = [f"{name} (an adapter file)" for name in files if name in ADAPTER_FILES]
    check_json(merged_dir / "config.json")
    shards = sorted(merged_dir.glob("*.safetensors"))
    if not shards:
        problems.append("no *.safetensors weights")
    if len(shards) > 1:
        named = set(check_json(merged_dir / "model.safetensors.index.json")["weight_map"].values())
        if named != {p.name for p in shards}:
            problems.append(f"the index names shards {sorted(named)}, the directory holds {[p.name for p in shards]}")
    for shard in shards:
        check_safetensors(shard)
    if not {"tokenizer.json", "vocab.json"} & set(files):
        problems.append("no tokenizer")
    if problems:
        raise ValueError(f"{merged_dir} is not a plain checkpoint: {'; '.join(problems)}")
    return files


@torch.no_grad()
def check_merged(base: str | os.PathLike, adapter: str | os.PathLike, merged_dir: str | os.PathLike,
                 prompts: list[str], *, dtype: str, device: str,
                 vocab_of: str | os.PathLike | None = None, reference_dtype: str | None = None) -> MergeCheck:
    """Compare `merged_dir`'s logits on `prompts`, reloaded with plain transformers, with the unmerged adapter model's.
    reference_dtype: also run the adapter model in it, and judge both by their distance to it (REFERENCE_FACTOR)."""
    from transformers import AutoModelForCausalLM

    files = check_layout(merged_dir)
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    tokenizer = load_tokenizer(adapter)
    inputs = [torch.tensor([tokenizer(p)["input_ids"]], device=dev) for p in prompts]
    expected, plain = _adapter_logits(base, adapter, inputs, torch_dtype, dev, vocab_of)
    merged = AutoModelForCausalLM.from_pretrained(str(merged_dir), dtype=torch_dtype, device_map=str(dev)).eval()
    got = [merged(ids).logits.float().cpu() for ids in inputs]
    del merged
    reference = {}
    if reference_dtype is not None:
        exact, _ = _adapter_logits(base, adapter, inputs, torch_dtype, dev, vocab_of,
                                   compute_dtype=resolve_dtype(reference_dtype, dev))
        reference = {"reference_dtype": reference_dtype, "merged_vs_reference": _max_diff(got, exact),
                     "adapter_vs_reference": _max_diff(expected, exact)}
    check = MergeCheck(
        max_abs_diff=_max_diff(got, expected), adapter_effect=_max_diff(plain, expected),
        max_abs_logit=max(e.abs().max().item() for e in expected), tolerance=TOLERANCE[torch_dtype],
        num_prompts=len(prompts), files=files, **reference)
    log.info("merge check %s: %s", merged_dir, check.as_dict())
    return check


def _adapter_logits(base, adapter, inputs, torch_dtype, dev, vocab_of, compute_dtype=None):
    """The adapter model's logits on `inputs` and the base's alone, weights in `torch_dtype`, computed in
    `compute_dtype`: a reference holds the very weights the merge rounded, not a new draw."""
    from peft import PeftModel

    model = load_base_weights(base, dtype=torch_dtype, device=dev)
    if vocab_of is not None:
        pad_vocab(model, vocab_size_of(vocab_of))
    model = PeftModel.from_pretrained(model, str(adapter)).eval()
    if compute_dtype is not None:
        model = model.to(compute_dtype)
    with_adapter = [model(ids).logits.float().cpu() for ids in inputs]
    with model.disable_adapter():
        plain = [model(ids).logits.float().cpu() for ids in inputs]
    del model
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return with_adapter, plain


def _max_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a, b))
