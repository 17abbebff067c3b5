"""GPU work timed with CUDA events: what the kernel tuner and the graph capture choose by."""

from __future__ import annotations

from collections.abc import Callable

import torch


def median_ms(run: Callable[[], object], repeats: int = 10, before: Callable[[], object] | None = None) -> float:
    """Median GPU milliseconds of `run()` over `repeats` calls; `before()` runs ahead of each, untimed."""
    times = []
    for _ in range(repeats):
        if before is not None:
            before()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]
