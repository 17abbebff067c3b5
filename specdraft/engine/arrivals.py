"""Counters that split kernels count their finished programs in, so that the last one reduces the splits."""

from __future__ import annotations

import torch
from torch import Tensor

MIN_COUNTERS = 65536  # more than any launch here needs
_ARRIVALS: dict[tuple[str, int | None], list[Tensor]] = {}


def arrival_counts(device: torch.device, size: int) -> Tensor:
    """At least `size` zeroed int32 counters per device; smaller ones are kept, as graphs may point at them."""
    index = device.index if device.index is not None or device.type != "cuda" else torch.cuda.current_device()
    buffers = _ARRIVALS.setdefault((device.type, index), [])
    if not buffers or buffers[-1].numel() < size:
        if device.type == "cuda" and torch.cuda.is_current_stream_capturing():
            raise RuntimeError(f"arrival counters for {size} programs first needed inside a CUDA graph capture: "
                               "run the step once eagerly first (the tuner does)")
        buffers.append(torch.zeros(max(size, MIN_COUNTERS), dtype=torch.int32, device=device))
    return buffers[-1]
