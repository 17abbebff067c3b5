"""LoRA supervised fine-tuning with TRL + PEFT, the loss on the assistant's completion only, resumed from a
checkpoint made with the same settings, examples and base."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch

from specdraft.plumbing.artifacts import check_checkpoint, check_json
from specdraft.plumbing.atomic import atomic_path
from specdraft.plumbing.config import GpuConfig, TrainingConfig
from specdraft.plumbing.data_parallel import (accumulation_per_process, gather, is_launched, launch, on_main_process,
                                              process_device, this_process)
from specdraft.decoding.generation import chat_prompt_ids, check_prompt_lengths
from specdraft.plumbing.gpu_stats import cap_memory, count_parameters, device_record, reset_peak_memory
from specdraft.plumbing.jsonl import iter_jsonl
from specdraft.plumbing.logs import Progress
from specdraft.plumbing.memory_budget import check_fits, training_need
from specdraft.models.loading import (architecture, context_length, load_base_weights, load_tokenizer, pad_vocab,
                                     resolve_device, resolve_dtype, vocab_size_of)
from specdraft.stages.train_throughput import ThroughputMeter

log = logging.getLogger(__name__)


def prompt_completion(prompt: list[dict], completion: str, *, enable_thinking: bool) -> dict:
    """TRL's prompt-completion example (loss on the completion), rendered with the chat kwargs inference uses."""
    return {"prompt": prompt, "completion": [{"role": "assistant", "content": completion}],
            "chat_template_kwargs": {"enable_thinking": enable_thinking}}


def progress_callback(what: str):
    """A Trainer callback logging step, loss, rate and ETA as lines, in place of tqdm's bar and printed dicts."""
    from transformers import TrainerCallback

    class LogProgress(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.progress = Progress(what, state.max_steps)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.progress.update(state.global_step, loss=float(logs["loss"]))

    return LogProgress()


def sft_lora(model, tokenizer, examples: list[dict], cfg: TrainingConfig, out_dir: str | os.PathLike,
             seed: int, *, checkpoint_dir: str | os.PathLike | None = None, callbacks: tuple = ()) -> list[dict]:
    """Fine-tune a LoRA adapter on `examples`, save it, the tokenizer and train_stats.json to `out_dir`, and return
    the log history. With `checkpoint_dir` and `cfg.save_steps`, a matching checkpoint there is resumed."""
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
    if cfg.liger_kernels and importlib.util.find_spec("liger_kernel") is None:
        raise ImportError("train_*.liger_kernels needs liger-kernel: pip install 'specdraft[liger]'")
    num_params = count_parameters(model.config)
    process = this_process()
    accumulation = accumulation_per_process(cfg.gradient_accumulation_steps, process.world_size, "train_*")
    checkpointing = checkpoint_dir is not None and cfg.save_steps > 0
    with tempfile.TemporaryDirectory(prefix="specdraft-sft-") as scratch:
        output_dir = Path(checkpoint_dir) if checkpointing else Path(scratch)
        args = SFTConfig(
            output_dir=str(output_dir),
            num_train_epochs=cfg.epochs,
            per_device_train_batch_size=cfg.batch_size,
            gradient_accumulation_steps=accumulation,
            learning_rate=cfg.learning_rate,
            max_length=cfg.max_length,
            completion_only_loss=True,
            padding_free=cfg.padding_free,
            use_liger_kernel=cfg.liger_kernels,
            gradient_checkpointing=cfg.gradient_checkpointing,
            bf16=on_gpu and torch.cuda.is_bf16_supported(),
            use_cpu=not on_gpu,
            save_strategy="steps" if checkpointing else "no",
            save_steps=max(cfg.save_steps, 1),  # read only with save_strategy "steps"
            save_total_limit=1,
            logging_steps=1,
            report_to="none",
            seed=seed,
            dataloader_num_workers=0,
            disable_tqdm=True,
            ddp_find_unused_parameters=False,  # every LoRA weight has a gradient at every step
        )
        # Building the arguments started the process group; one process decides which checkpoint to resume.
        resume_from = on_main_process(
            lambda: prepare_checkpoints(output_dir, checkpoint_fingerprint(model, examples, cfg, seed))
        ) if checkpointing else None
        meter = ThroughputMeter()
        trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(examples),
                             processing_class=tokenizer, peft_config=lora, callbacks=[meter, *callbacks])
        trainer.remove_callback(PrinterCallback)
        trainer.add_callback(progress_callback(f"train {Path(out_dir).name}"))
        trainer.train(resume_from_checkpoint=resume_from)
        device = next(model.parameters()).device
        stats = meter.summary(6 * num_params, device, num_devices=process.world_size)
        peaks = gather(device_record(device).get("peak_allocated_gib"))
        stats.update({"num_params": num_params, "resumed_from_step": meter.start_step,
                      "num_steps": trainer.state.global_step, "num_examples": len(examples), "epochs": cfg.epochs,
                      "quantization": cfg.quantization,
                      "batch_size": cfg.batch_size, "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
                      "max_length": cfg.max_length, "gradient_checkpointing": cfg.gradient_checkpointing,
                      "padding_free": cfg.padding_free, "liger_kernels": cfg.liger_kernels, "lora_r": cfg.lora.r,
                      "num_processes": process.world_size, "gradient_accumulation_steps_per_process": accumulation,
                      "peak_allocated_gib_per_process": peaks})
        if process.is_main:
            with atomic_path(out_dir, directory=True) as tmp:
                # The vocabulary may have been padded; rows past the base's are restored by `pad_vocab` on load.
                trainer.model.save_pretrained(tmp, save_embedding_layers=False)
                tokenizer.save_pretrained(tmp)
                (Path(tmp) / "log_history.json").write_text(json.dumps(trainer.state.log_history, indent=1))
                (Path(tmp) / "train_stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    if checkpointing and process.is_main:
        shutil.rmtree(output_dir, ignore_errors=True)
    speed = stats.get("steady") or stats.get("run") or {}
    log.info("trained %d steps: %s tokens/s, MFU %s, peak GPU memory %s GiB", trainer.state.global_step,
             speed.get("tokens_per_second"), speed.get("mfu"), stats.get("peak_allocated_gib"))
    return trainer.state.log_history


def check_prompts_fit(path: str, numbered: list[tuple[int, dict]], examples: list[dict], tokenizer, base: str,
                      cfg: TrainingConfig) -> None:
    """Before any model loads: fail on a prompt longer than the context; warn of prompts of `max_length` tokens or
    more, whose completions TRL's truncation cuts entirely."""
    lengths = [len(chat_prompt_ids(tokenizer, e["prompt"], **e["chat_template_kwargs"])) for e in examples]
    context = context_length(base)
    check_prompt_lengths(path, lengths, limit=context - 1, ids=[str(r.get("id", "?")) for _, r in numbered],
                         line_numbers=[n for n, _ in numbered],
                         reason=f"the model's context of {context}, less one completion token")
    cut = [(n, r.get("id", "?"), length) for (n, r), length in zip(numbered, lengths) if length >= cfg.max_length]
    if cut:
        log.warning("%s: %d of %d prompts have max_length %d tokens or more, so truncation leaves no completion "
                    "token to learn from: %s", path, len(cut), len(lengths), cfg.max_length,
                    "; ".join(f"line {n} (id {i}): {length} tokens" for n, i, length in cut[:5]))


def check_training_fits(stage: str, base: str, cfg: TrainingConfig, gpu: GpuConfig, dev: torch.device,
                        dtype: torch.dtype, vocab_size: int | None = None) -> None:
    """Cap the allocator at the budget and fail, before any model loads, when training's lower bound exceeds it."""
    budget = cap_memory(dev, gpu.memory_gib, gpu.memory_utilization)
    need = training_need(architecture(base, vocab_size), quantization=cfg.quantization, lora_r=cfg.lora.r,
                         target_modules=cfg.lora.target_modules, batch_size=cfg.batch_size,
                         max_length=cfg.max_length, gradient_checkpointing=cfg.gradient_checkpointing,
                         dtype_bytes=dtype.itemsize)
    keys = tuple(f"{stage}.{key}" for key in ("quantization: 4bit", "batch_size", "max_length",
                                               "gradient_checkpointing: true", "lora.r"))
    check_fits(stage, need, budget, keys, gpu.memory_utilization)


def train_target(base: str, train_path: str, out_dir: str, cfg: TrainingConfig, *, dtype: str, device: str,
                 seed: int, enable_thinking: bool, gpu: GpuConfig, checkpoint_dir: str | None = None) -> list[dict]:
    """LoRA-tune the target on a style's training records (QLoRA with `quantization: 4bit`) on `cfg.num_gpus`."""
    if cfg.num_gpus > 1 and not is_launched():
        accumulation_per_process(cfg.gradient_accumulation_steps, cfg.num_gpus, "train_target")
        kwargs = dict(base=base, train_path=train_path, out_dir=out_dir, cfg=cfg, dtype=dtype, device=device,
                      seed=seed, enable_thinking=enable_thinking, gpu=gpu, checkpoint_dir=checkpoint_dir)
        return launch(train_target, kwargs, cfg.num_gpus, on_gpus=device != "cpu")
    numbered = list(iter_jsonl(train_path, required=("messages",)))
    examples = [prompt_completion(r["messages"][:-1], r["messages"][-1]["content"], enable_thinking=enable_thinking)
                for _, r in numbered]
    tokenizer = load_tokenizer(base)
    check_prompts_fit(train_path, numbered, examples, tokenizer, base, cfg)
    dev = process_device(resolve_device(device))
    check_training_fits("train_target", base, cfg, gpu, dev, resolve_dtype(dtype, dev))
    reset_peak_memory(dev)
    model = load_base_weights(base, dtype=resolve_dtype(dtype, dev), device=dev, quantization=cfg.quantization)
    model.train()
    return sft_lora(model, tokenizer, examples, cfg, out_dir, seed, checkpoint_dir=checkpoint_dir)


def train_draft(base: str, target_base: str, distilled_path: str, out_dir: str, cfg: TrainingConfig, *,
                dtype: str, device: str, seed: int, enable_thinking: bool, gpu: GpuConfig,
                checkpoint_dir: str | None = None) -> list[dict]:
    """LoRA-tune the draft on the distilled completions, its vocabulary padded to the target's, on `cfg.num_gpus`."""
    if cfg.num_gpus > 1 and not is_launched():
        accumulation_per_process(cfg.gradient_accumulation_steps, cfg.num_gpus, "train_draft")
        kwargs = dict(base=base, target_base=target_base, distilled_path=distilled_path, out_dir=out_dir, cfg=cfg,
                      dtype=dtype, device=device, seed=seed, enable_thinking=enable_thinking, gpu=gpu,
                      checkpoint_dir=checkpoint_dir)
        return launch(train_draft, kwargs, cfg.num_gpus, on_gpus=device != "cpu")
    numbered = list(iter_jsonl(distilled_path, required=("prompt", "completion")))
    examples = [prompt_completion(r["prompt"], r["completion"], enable_thinking=enable_thinking)
                for _, r in numbered]
    tokenizer = load_tokenizer(base)
    check_prompts_fit(distilled_path, numbered, examples, tokenizer, base, cfg)
    dev = process_device(resolve_device(device))
    check_training_fits("train_draft", base, cfg, gpu, dev, resolve_dtype(dtype, dev), vocab_size_of(target_base))
    reset_peak_memory(dev)
    model = load_base_weights(base, dtype=resolve_dtype(dtype, dev), device=dev, quantization=cfg.quantization)
    pad_vocab(model, vocab_size_of(target_base))
    model.train()
    return sft_lora(model, tokenizer, examples, cfg, out_dir, seed, checkpoint_dir=checkpoint_dir)


FINGERPRINT = "fingerprint.json"


def checkpoint_fingerprint(model, examples: list[dict], cfg: TrainingConfig, seed: int) -> dict:
    """What a checkpoint must have been made with to be resumed: settings, seed, examples, base architecture."""
    digest = hashlib.sha256(json.dumps(examples, sort_keys=True).encode()).hexdigest()
    config = {k: v for k, v in model.config.to_dict().items() if k != "transformers_version"}
    # Saving, host memory and process count do not change what is trained: resuming across them is safe.
    training = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("save_steps", "mem_mb", "num_gpus")}
    fingerprint = {"training": training, "seed": seed, "examples_sha256": digest,
                   "base_config_sha256": hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()
                                                        ).hexdigest()}
    return json.loads(json.dumps(fingerprint))  # as it reads back from the file (tuples become lists)


def prepare_checkpoints(directory: Path, fingerprint: dict) -> str | None:
    """The newest complete checkpoint made with `fingerprint` (others are deleted), or None; `trainer_state.json`
    comes last, so a checkpoint without it was cut off while saving."""
    marker = directory / FINGERPRINT
    if directory.exists() and (not marker.is_file() or check_json(marker) != fingerprint):
        log.info("discarding checkpoints in %s: made with other settings, examples or base", directory)
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(fingerprint, indent=1))
    complete = [p for p in directory.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    if not complete:
        return None
    newest = max(complete, key=lambda p: int(p.name.rsplit("-", 1)[1]))
    check_checkpoint(newest)
    log.info("resuming from %s (step %s)", newest, newest.name.rsplit("-", 1)[1])
    return str(newest)
