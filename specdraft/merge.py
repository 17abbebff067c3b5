"""The merge stage: a tuned model as a plain Hugging Face checkpoint, the LoRA adapter folded into the base.

What the seed's `merge_adapter.py` produced: a directory that `AutoModelForCausalLM.from_pretrained` and vLLM
load with no PEFT. The draft keeps its vocabulary padded to the target's, so that the pair serves as is.
An adapter trained on a 4-bit base (QLoRA) is merged into the full-precision base, as QLoRA prescribes.
"""

from __future__ import annotations

import logging
import os

from specdraft.atomic import atomic_path
from specdraft.models import load_causal_lm, load_tokenizer, resolve_device, resolve_dtype, vocab_size_of

log = logging.getLogger(__name__)


def merge_adapter(base: str | os.PathLike, adapter: str | os.PathLike, out_dir: str | os.PathLike, *,
                  dtype: str, device: str, vocab_of: str | os.PathLike | None = None) -> None:
    """Write `base` with `adapter` merged, and the adapter's tokenizer, to `out_dir` (safetensors).

    vocab_of: a model whose vocabulary size the merged model is padded to (the target, for the draft).
    """
    dev = resolve_device(device)
    vocab_size = vocab_size_of(vocab_of) if vocab_of is not None else None
    model = load_causal_lm(base, dtype=resolve_dtype(dtype, dev), device=dev, adapter=adapter,
                           vocab_size=vocab_size)
    tokenizer = load_tokenizer(adapter)
    with atomic_path(out_dir, directory=True) as tmp:
        # Each shard passes through host memory whole: 5 GB shards (as the hub's) keep a 14B merge in mem_mb.
        model.save_pretrained(tmp, max_shard_size="5GB")
        tokenizer.save_pretrained(tmp)
    log.info("merged %s into %s (%d vocabulary rows) -> %s", adapter, base, model.config.vocab_size, out_dir)
