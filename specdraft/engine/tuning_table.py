"""Kernel choices stored so start-up need not time every candidate again: this machine's table
(`$SPECDRAFT_KERNEL_CACHE`, default per GPU and Triton version, added to as choices are made), then the one
shipped per GPU in `tuned/` (as vLLM ships them). A choice is a configuration's fields, or null for the
torch path; SPECDRAFT_KERNEL_CACHE=off reads and writes neither."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
from pathlib import Path

from specdraft.plumbing.atomic import atomic_path

MISSING = object()  # no stored choice for a key
SHIPPED = Path(__file__).parent / "tuned"


def gpu_slug(name: str) -> str:
    """A GPU's name as a file name: 'NVIDIA H200' -> 'NVIDIA_H200'."""
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")


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
    """The choices a table file holds ({} where there is none); anything else is an error naming it."""
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


class TuningTable:
    """This machine's table (`local`, added to) over the shipped one (read only); a None path is skipped."""

    def __init__(self, gpu: str, local: Path | None, shipped: Path | None):
        self.gpu, self.local, self.shipped = gpu, local, shipped
        self._choices: tuple[dict, dict] | None = None

    @classmethod
    def for_gpu(cls, gpu: str) -> TuningTable:
        local = local_path(gpu)
        return cls(gpu, local, None if local is None else SHIPPED / f"{gpu_slug(gpu)}.json")

    def _read(self) -> tuple[dict, dict]:
        if self._choices is None:
            self._choices = tuple(read(p) if p is not None else {} for p in (self.local, self.shipped))
        return self._choices

    def lookup(self, key: tuple) -> dict | None | object:
        """The stored choice for a kernel key, local first, or MISSING."""
        local, shipped = self._read()
        name = str(key)
        if name in local:
            return local[name]
        return shipped.get(name, MISSING)

    def record(self, key: tuple, choice: dict | None) -> None:
        """Add a choice made here to this machine's table (rewritten whole, atomically)."""
        local, _ = self._read()
        if self.local is None:
            return
        local[str(key)] = choice
        merged = {**read(self.local), **local}  # keep what another process added meanwhile
        write(self.local, self.gpu, merged, "tuned on this machine by specdraft.engine.tuner")
