"""Counters that split kernels count their finished programs in, so that the last one reduces the splits."""

from __future__ import annotations

import torch
from torch import Tensor

MIN_COUNTERS = 65536  # more than any launch here needs (a 152,064-row lm-head in 4-row blocks: 38,016)
_ARRIVALS: dict[tuple[str, int | None], list[Tensor]] = {}


def arrival_counts(device: torch.device, size: int) -> Tensor:
    """Zeroed int32 counters, at least `size`, that split kernels count their finished programs in; each
    launch leaves them zero again, so one buffer per device serves every launch (kernels of a stream run in
    turn). A larger buffer never frees the smaller one, which captured graphs may still point at. Allocated
    outside graph capture: a captured allocation would belong to the graph's pool."""
    index = device.index if device.index is not None or device.type != "cuda" else torch.cuda.current_device()
    buffers = _ARRIVALS.setdefault((device.type, index), [])
    if not buffers or buffers[-1].numel() < size:
        if device.type == "cuda" and torch.cuda.is_current_stream_capturing():
            raise RuntimeError(f"arrival counters for {size} programs first needed inside a CUDA graph capture: "
                               "run the step once eagerly first (the tuner does)")
        buffers.append(torch.zeros(max(size, MIN_COUNTERS), dtype=torch.int32, device=device))
    return buffers[-1]
