"""LoRA supervised fine-tuning with TRL + PEFT, the loss on the assistant's completion only."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

import torch

from specdraft.atomic import atomic_path
from specdraft.config import TrainingConfig
from specdraft.generation import chat_prompt_ids, check_prompt_lengths
from specdraft.jsonl import iter_jsonl
from specdraft.logs import Progress
from specdraft.models import (context_length, load_causal_lm, load_tokenizer, resolve_device, resolve_dtype,
                              vocab_size_of)

log = logging.getLogger(__name__)


def prompt_completion(prompt: list[dict], completion: str) -> dict:
    """TRL's conversational prompt-completion example: the loss covers the completion only."""
    return {"prompt": prompt, "completion": [{"role": "assistant", "content": completion}]}


def progress_callback(what: str):
    """A Trainer callback logging step, loss, rate and ETA as readable lines (in place of tqdm's bar and the
    printed log dicts)."""
    from transformers import TrainerCallback

    class LogProgress(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.progress = Progress(what, state.max_steps)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.progress.update(state.global_step, loss=float(logs["loss"]))

    return LogProgress()


def sft_lora(model, tokenizer, examples: list[dict], cfg: TrainingConfig, out_dir: str | os.PathLike,
             seed: int) -> list[dict]:
    """Fine-tune a LoRA adapter on prompt-completion `examples`; save adapter and tokenizer to `out_dir`.

    Returns the trainer's log history. The base model's weights are left untouched.
    """
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    if not examples:
        raise ValueError("no training examples")
    on_gpu = next(model.parameters()).device.type == "cuda"
    lora = LoraConfig(
        r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
        target_modules=list(cfg.lora.target_modules), task_type="CAUSAL_LM",
    )
    with tempfile.TemporaryDirectory(prefix="specdraft-sft-") as scratch:
        args = SFTConfig(
            output_dir=scratch,
            num_train_epochs=cfg.epochs,
            per_device_train_batch_size=cfg.batch_size,
            gradient_accumulation_steps=cfg.gradient_accumulation_steps,
            learning_rate=cfg.learning_rate,
            max_length=cfg.max_length,
            completion_only_loss=True,
            gradient_checkpointing=cfg.gradient_checkpointing,
            bf16=on_gpu and torch.cuda.is_bf16_supported(),
            use_cpu=not on_gpu,
            save_strategy="no",
            logging_steps=1,
            report_to="none",
            seed=seed,
            dataloader_num_workers=0,
            disable_tqdm=True,
        )
        trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(examples),
                             processing_class=tokenizer, peft_config=lora)
        trainer.remove_callback(PrinterCallback)
        trainer.add_callback(progress_callback(f"train {Path(out_dir).name}"))
        trainer.train()
        with atomic_path(out_dir, directory=True) as tmp:
            # The vocabulary may have been padded; rows past the base's are restored by `pad_vocab` on load.
            trainer.model.save_pretrained(tmp, save_embedding_layers=False)
            tokenizer.save_pretrained(tmp)
            (Path(tmp) / "log_history.json").write_text(json.dumps(trainer.state.log_history, indent=1))
    return trainer.state.log_history


def check_prompts_fit(path: str, numbered: list[tuple[int, dict]], examples: list[dict], tokenizer, base: str,
                      cfg: TrainingConfig) -> None:
    """Before any model is loaded: fail, naming file and line, on a prompt longer than the model's context;
    count and log (with lines) the prompts of `max_length` tokens or more, whose completions TRL's truncation
    to `max_length` cuts entirely (they are kept, as configured, but teach nothing)."""
    lengths = [len(chat_prompt_ids(tokenizer, e["prompt"])) for e in examples]
    context = context_length(base)
    check_prompt_lengths(path, lengths, limit=context - 1, ids=[str(r.get("id", "?")) for _, r in numbered],
                         line_numbers=[n for n, _ in numbered],
                         reason=f"the model's context of {context}, less one completion token")
    cut = [(n, r.get("id", "?"), length) for (n, r), length in zip(numbered, lengths) if length >= cfg.max_length]
    if cut:
        log.warning("%s: %d of %d prompts have max_length %d tokens or more, so truncation leaves no completion "
                    "token to learn from: %s", path, len(cut), len(lengths), cfg.max_length,
                    "; ".join(f"line {n} (id {i}): {length} tokens" for n, i, length in cut[:5]))


def train_target(base: str, train_path: str, out_dir: str, cfg: TrainingConfig, *, dtype: str, device: str,
                 seed: int) -> list[dict]:
    """LoRA-tune the target on a style's processed training records."""
    numbered = list(iter_jsonl(train_path, required=("messages",)))
    examples = [prompt_completion(r["messages"][:-1], r["messages"][-1]["content"]) for _, r in numbered]
    tokenizer = load_tokenizer(base)
    check_prompts_fit(train_path, numbered, examples, tokenizer, base, cfg)
    dev = resolve_device(device)
    model = load_causal_lm(base, dtype=resolve_dtype(dtype, dev), device=dev)
    model.train()
    return sft_lora(model, tokenizer, examples, cfg, out_dir, seed)


def train_draft(base: str, target_base: str, distilled_path: str, out_dir: str, cfg: TrainingConfig, *,
                dtype: str, device: str, seed: int) -> list[dict]:
    """LoRA-tune the draft on the tuned target's distilled completions, its vocabulary padded to the target's."""
    numbered = list(iter_jsonl(distilled_path, required=("prompt", "completion")))
    examples = [prompt_completion(r["prompt"], r["completion"]) for _, r in numbered]
    tokenizer = load_tokenizer(base)
    check_prompts_fit(distilled_path, numbered, examples, tokenizer, base, cfg)
    dev = resolve_device(device)
    model = load_causal_lm(base, dtype=resolve_dtype(dtype, dev), device=dev,
                           vocab_size=vocab_size_of(target_base))
    model.train()
    return sft_lora(model, tokenizer, examples, cfg, out_dir, seed)
