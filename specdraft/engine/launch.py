"""Whether the Triton kernels can run here, and how they are launched (plainly or with programmatic dependent
launch). Imports no Triton: the CPU path asks these questions too."""

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
    """Whether this GPU and Triton can launch the kernels with programmatic dependent launch (Hopper and
    later, Triton 3.4 and later; not under the interpreter, nor with SPECDRAFT_NO_PDL=1)."""
    if interpreting() or os.environ.get("SPECDRAFT_NO_PDL") or not torch.cuda.is_available():
        return False
    from specdraft.engine import triton_common

    return triton_common.HAS_GRID_DEPENDENCY_CONTROL and torch.cuda.get_device_capability()[0] >= 9


# The kernel families that run Triton kernels where they can: 'linear' (the projections, and a prefill's
# dequantization of quantized weights), 'rope_attention' (RoPE with the cache writes, and decode attention).
TRITON_FAMILIES = frozenset({"linear", "rope_attention"})


class LaunchOptions:
    """Which kernels run, and how kernels launched now are launched. `families`: the kernel families
    (`TRITON_FAMILIES`) that run their Triton kernels where they can; the others take torch's path (what a
    benchmark compares against). With programmatic dependent launch (PDL) each kernel starts
    while the one before it finishes, its launch and, for `fused_linear`, the first reads of its weight hidden
    behind that kernel's last programs, and waits for that kernel's writes before reading its input
    (`triton_common.wait_for_previous_kernel`). Only inside `dependent(True)`, which the runner offers to the
    graphs of its `dependent_launch_steps`; plain launches elsewhere. `allow_dependent = False` turns PDL off
    wherever it would be offered (what a benchmark compares against)."""

    def __init__(self, allow_dependent: bool = True, families: frozenset[str] = TRITON_FAMILIES):
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
        """Whether `family`'s Triton kernels may run (where `quant.fast_kernels` says they can)."""
        return family in self._families

    def supported(self) -> bool:
        """Whether dependent launches can be offered here (`pdl_supported`, and allowed)."""
        return self.allow_dependent and pdl_supported()

    @property
    def pdl(self) -> bool:
        return self._stack[-1]

    @contextlib.contextmanager
    def dependent(self, on: bool):
        """Launch the kernels with programmatic dependent launch inside (where `supported`), or plainly."""
        self._stack.append(on and self.supported())
        try:
            yield
        finally:
            self._stack.pop()

    def triton_options(self) -> dict:
        """The keyword arguments a Triton launch takes for the current setting."""
        return dict(PDL=True, launch_pdl=True) if self.pdl else {}
