"""Where a stage's start-up goes: seconds per loading phase (draw, merge, engine build, tuning, warm-up), logged."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch

log = logging.getLogger(__name__)


def _sync(device: torch.device | None) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


class PhaseClock:
    """Seconds per named phase of loading `what`, the GPU synchronised at each end; interleaved phases accumulate."""

    def __init__(self, what: str, device: torch.device | None):
        self.what, self.device = what, device
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        _sync(self.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            _sync(self.device)
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - start

    def report(self) -> None:
        for phase, seconds in self.seconds.items():
            log.info("load %s: %s %.1f s", self.what, phase, seconds)


@contextmanager
def phase(what: str, name: str, device: torch.device | None = None) -> Iterator[None]:
    """Time one phase and log it as it ends."""
    clock = PhaseClock(what, device)
    with clock(name):
        yield
    clock.report()


def log_kernel_tuning(stage: str) -> None:
    """Log the seconds this process spent tuning Triton kernels, and the shapes no tuning table held."""
    if not torch.cuda.is_available():
        return
    from specdraft.engine import tuner

    kernel_tuner = tuner.current()
    tuned = list(kernel_tuner.seconds)  # the keys timed afresh: those no tuning table held
    log.info("%s: kernel tuning %.1f s over %d shape(s) no tuning table held%s", stage, kernel_tuner.tuning_seconds(),
             len(tuned), f", e.g. {tuned[:3]}" if tuned else "")
