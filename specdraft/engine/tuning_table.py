"""Kernel configurations chosen before, so that an engine's start-up need not time every candidate again.

`kernels` tunes each (shape, fusion) on first use: it compiles and times every candidate configuration.
On the H200 that was 34.6 s of the 14B int8 target's 39.0 s start-up (docs/performance.md). A choice is
looked up first, in order, in:

1. this machine's table, `$SPECDRAFT_KERNEL_CACHE` (default
   `~/.cache/specdraft/kernels-<gpu>-triton<version>.json`: a new Triton tunes afresh), to which every
   choice made here is added as soon as it is made;
2. the table shipped for this GPU model, `specdraft/engine/tuned/<gpu>.json`, written from a benchmark's
   record of its choices on that GPU (`benchmarks/tuning_table.py`), as vLLM ships tuned kernel
   configurations per GPU.

A stored choice is a configuration's fields, or null for "the torch path was faster". `kernels` uses it
only where it still compiles here; else the shape is tuned afresh. SPECDRAFT_KERNEL_CACHE=off reads and
writes neither table.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import os
import re
from pathlib import Path

from specdraft.atomic import atomic_path

MISSING = object()  # no stored choice for a key
SHIPPED = Path(__file__).parent / "tuned"


def gpu_slug(name: str) -> str:
    """A GPU's name as a file name: 'NVIDIA H200' -> 'NVIDIA_H200'."""
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")


def _gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name()


def _triton_version() -> str:
    try:
        return importlib.metadata.version("triton")
    except importlib.metadata.PackageNotFoundError:
        return "none"


def local_path(gpu: str) -> Path | None:
    """This machine's table for `gpu` and the installed Triton, or None when SPECDRAFT_KERNEL_CACHE=off."""
    setting = os.environ.get("SPECDRAFT_KERNEL_CACHE", "")
    if setting == "off":
        return None
    if setting:
        return Path(setting)
    return Path.home() / ".cache" / "specdraft" / f"kernels-{gpu_slug(gpu)}-triton{_triton_version()}.json"


def read(path: Path) -> dict[str, dict | None]:
    """The choices a table file holds ({} where there is no file); a file that is not such a table is an
    error naming it."""
    if not path.exists():
        return {}
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
        choices = table["choices"]
        if not isinstance(choices, dict) or not all(v is None or isinstance(v, dict) for v in choices.values()):
            raise ValueError("'choices' must map each kernel key to a configuration's fields or null")
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a kernel tuning table ({e}); delete it (it is rebuilt as kernels are "
                         "tuned) or set SPECDRAFT_KERNEL_CACHE=off") from e
    return choices


def write(path: Path, gpu: str, choices: dict[str, dict | None], source: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"gpu": gpu, "source": source, "choices": choices}, indent=1, sort_keys=True) + "\n",
                       encoding="utf-8")


@functools.cache
def _tables() -> tuple[str, Path | None, dict, dict]:
    """(gpu, local path, local choices, shipped choices), read once per process."""
    gpu = _gpu_name()
    path = local_path(gpu)
    if path is None:
        return gpu, None, {}, {}
    return gpu, path, read(path), read(SHIPPED / f"{gpu_slug(gpu)}.json")


def lookup(key: tuple) -> dict | None | object:
    """The stored choice for a kernel key (this machine's first, then the shipped one), or MISSING."""
    _, _, local, shipped = _tables()
    name = str(key)
    if name in local:
        return local[name]
    return shipped.get(name, MISSING)


def record(key: tuple, choice: dict | None) -> None:
    """Add a choice made here to this machine's table (rewritten whole, atomically)."""
    gpu, path, local, _ = _tables()
    if path is None:
        return
    local[str(key)] = choice
    merged = {**read(path), **local}  # keep what another process added meanwhile
    write(path, gpu, merged, "tuned on this machine by specdraft.engine.kernels")
