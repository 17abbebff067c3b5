"""Tiny LoRA runs that a test starts in its own process or in data-parallel processes (`data_parallel.launch`):
module-level, so the launched processes can import them."""

from __future__ import annotations

import torch
from transformers import TrainerCallback

from specdraft.plumbing.config import TrainingConfig, load_config
from specdraft.plumbing.data_parallel import this_process
from specdraft.models.loading import load_tokenizer
from specdraft.stages.base_models import build_model
from specdraft.stages.train import sft_lora


class RecordFirstGradients(TrainerCallback):
    """Saves (rank 0) the LoRA gradients of the first optimizer step, as the optimizer is about to apply them."""

    def __init__(self, path: str):
        self.path = path

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if state.global_step == 0 and this_process().is_main:
            torch.save({n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None},
                       self.path)


class KillAfter(TrainerCallback):
    """Stops training in every process after `step` optimizer steps, as a killed job stops."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt(f"killed after step {self.step}")


def train_tiny(tokenizer_dir: str, examples: list[dict], cfg: TrainingConfig, out_dir: str, *,
               checkpoint_dir: str | None = None, gradients_path: str | None = None,
               kill_after: int | None = None) -> list[dict]:
    """LoRA-tune the tiny target (the same initial weights in every process) on `examples`."""
    tokenizer = load_tokenizer(tokenizer_dir)
    model = build_model(load_config({}).tiny.target, len(tokenizer), 256, seed=0)
    callbacks = ([RecordFirstGradients(gradients_path)] if gradients_path else []) + \
        ([KillAfter(kill_after)] if kill_after else [])
    return sft_lora(model, tokenizer, examples, cfg, out_dir, seed=0, checkpoint_dir=checkpoint_dir,
                    callbacks=tuple(callbacks))


def sleep_forever() -> None:
    """A launched process that only ends when it is killed."""
    import time

    while True:
        time.sleep(1)
