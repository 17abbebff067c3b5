"""Whether the Triton kernels can run here, and how they are launched. Imports no Triton: the CPU path asks too."""

from __future__ import annotations

import contextlib
import functools
import os

import torch


@functools.cache
def available() -> bool:
    """Triton importable and a CUDA device present (or the interpreter asked for, for tests on a CPU)."""
    if os.environ.get("SPECDRAFT_NO_TRITON"):
        return False
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available() or interpreting()


def interpreting() -> bool:
    """Triton's interpreter (TRITON_INTERPRET=1) runs the kernels on a CPU, for tests."""
    return os.environ.get("TRITON_INTERPRET") == "1"


@functools.cache
def pdl_supported() -> bool:
    """Whether this GPU and Triton support programmatic dependent launch (not interpreted, SPECDRAFT_NO_PDL unset)."""
    if interpreting() or os.environ.get("SPECDRAFT_NO_PDL") or not torch.cuda.is_available():
        return False
    from specdraft.engine import triton_common

    return triton_common.HAS_GRID_DEPENDENCY_CONTROL and torch.cuda.get_device_capability()[0] >= 9


TRITON_FAMILIES = frozenset({"linear", "rope_attention", "fused_step"})
# fused_step is opt-in: on the H200 it is slower than the layer-by-layer draft step (docs/performance.md).
DEFAULT_FAMILIES = TRITON_FAMILIES - {"fused_step"}


class LaunchOptions:
    """Which kernel families run Triton (the rest take torch's path) and whether launches use programmatic
    dependent launch: only inside `dependent(True)`, and never with `allow_dependent = False`."""

    def __init__(self, allow_dependent: bool = True, families: frozenset[str] = DEFAULT_FAMILIES):
        self.allow_dependent = allow_dependent
        self.families = families
        self._stack = [False]  # the innermost `dependent` setting

    @property
    def families(self) -> frozenset[str]:
        return self._families

    @families.setter
    def families(self, families: frozenset[str]) -> None:
        unknown = set(families) - TRITON_FAMILIES
        if unknown:
            raise ValueError(f"unknown kernel families {sorted(unknown)}; allowed: {sorted(TRITON_FAMILIES)}")
        self._families = frozenset(families)

    def runs(self, family: str) -> bool:
        return family in self._families

    def supported(self) -> bool:
        """Whether dependent launches can be offered here (`pdl_supported`, and allowed)."""
        return self.allow_dependent and pdl_supported()

    @property
    def pdl(self) -> bool:
        return self._stack[-1]

    @contextlib.contextmanager
    def dependent(self, on: bool):
        """Launch with programmatic dependent launch inside (where `supported`), or plainly."""
        self._stack.append(on and self.supported())
        try:
            yield
        finally:
            self._stack.pop()

    def triton_options(self) -> dict:
        return dict(PDL=True, launch_pdl=True) if self.pdl else {}
