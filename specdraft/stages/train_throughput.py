"""Training throughput and MFU, measured from the trainer's own steps and token counts."""

from __future__ import annotations

import time

import torch
from transformers import TrainerCallback

from specdraft.plumbing.gpu_stats import device_record, throughput


class ThroughputMeter(TrainerCallback):
    """Clock and TRL's token count at every optimizer step of this process (the GPU synchronised first)."""

    def __init__(self):
        self.start_step = 0
        self.start_time = 0.0
        self.step_times: dict[int, float] = {}
        self.step_tokens: dict[int, float] = {}

    def _now(self) -> float:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_train_begin(self, args, state, control, **kwargs):
        self.start_step, self.start_time = state.global_step, self._now()

    def on_step_end(self, args, state, control, **kwargs):
        self.step_times[state.global_step] = self._now()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "num_tokens" in logs:  # TRL's count of non-padding tokens, cumulative, over all processes
            self.step_tokens[state.global_step] = logs["num_tokens"]

    def summary(self, flops_per_token: float, device: torch.device, *, num_devices: int) -> dict:
        """Throughput of the whole run and of the steady state (after the first step), tokens over all processes,
        MFU of `num_devices` GPUs together."""
        record = {"stage": "train", **device_record(device)}
        steps = sorted(s for s in self.step_times if s in self.step_tokens)
        if not steps:
            return record
        last = steps[-1]
        record["run"] = throughput(int(self.step_tokens[last]), self.step_times[last] - self.start_time,
                                   flops_per_token, record.get("device_name"), num_devices)
        if len(steps) > 1:
            first = steps[0]
            record["steady"] = throughput(int(self.step_tokens[last] - self.step_tokens[first]),
                                          self.step_times[last] - self.step_times[first], flops_per_token,
                                          record.get("device_name"), num_devices)
            record["steady"]["num_steps"] = last - first
        return record
