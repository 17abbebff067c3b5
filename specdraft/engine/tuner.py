"""The kernel tuner: per kernel key (a shape and its fusions) one configuration, from the stored tables or
timed with L2 scrubbed (a decode step finds its weights in HBM). Kernels consult `current()`; a test builds
its own `KernelTuner` and makes it current with `use(tuner)`."""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable

import torch

from specdraft.engine.launch import LaunchOptions, interpreting
from specdraft.engine.timing import median_ms
from specdraft.engine.tuning_table import MISSING, TuningTable

REFERENCE = None  # the tuned choice meaning "the torch path was fastest"


def reason(error: Exception) -> str:
    """Why a kernel did not compile or run, in one line (for `failures`)."""
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:300]


@functools.cache
def _scrub_buffer(device: torch.device) -> torch.Tensor:
    """More bytes than the GPU's L2; a normal tensor even under inference mode, so any tuning may write it."""
    with torch.inference_mode(False):
        return torch.empty(256 * 1024**2, dtype=torch.uint8, device=device)


def scrubbed_launch_ms(run: Callable[[], object], device: torch.device, repeats: int = 10) -> float:
    """Median ms of one launch of `run`, L2 scrubbed; a spin kernel first hides the host's launch time."""
    scrub = _scrub_buffer(device)

    def before() -> None:
        scrub.zero_()
        torch.cuda._sleep(200_000)  # longer than launching `run`

    return median_ms(run, repeats, before)


class KernelTuner:
    """table: stored choices (default: this GPU's); time_ms: (run, device) -> ms; forced: per family a
    configuration, or a function of the key, taken untimed and unstored (tests)."""

    def __init__(self, *, table: TuningTable | None = None,
                 time_ms: Callable[[Callable[[], object], torch.device], float] = scrubbed_launch_ms,
                 interpreting: bool | None = None, forced: dict[str, tuple | Callable[[tuple], tuple]] | None = None,
                 launch: LaunchOptions | None = None):
        self._table, self.time_ms = table, time_ms
        self._interpreting = interpreting
        self.forced = dict(forced or {})
        self.launch = launch or LaunchOptions()
        self.choices: dict[tuple, tuple | None] = {}  # kernel key -> its configuration (REFERENCE: torch's path)
        self.failures: dict[tuple, str] = {}  # kernel key -> why no candidate ran
        self.seconds: dict[tuple, float] = {}  # kernel key -> seconds spent choosing (compiling included)
        self.compiled: set[tuple] = set()  # keys of untuned kernels that compiled here

    @property
    def interpreting(self) -> bool:
        return interpreting() if self._interpreting is None else self._interpreting

    @property
    def table(self) -> TuningTable:
        if self._table is None:
            self._table = TuningTable.for_gpu(torch.cuda.get_device_name())
        return self._table

    def tuned_configs(self) -> dict[tuple, tuple | None]:
        return dict(self.choices)

    def tuning_seconds(self) -> float:
        return sum(self.seconds.values())

    def choice(self, key: tuple, family: str, make: type, run: Callable, candidates: Callable[[], list],
               reference: Callable[[], object] | None, device: torch.device, fixed: tuple) -> tuple | None:
        """The configuration for `key`, chosen on first use: forced, `fixed` if interpreting, or the fastest."""
        if key not in self.choices:
            def tune():
                if family in self.forced:
                    forced = self.forced[family]
                    return forced if isinstance(forced, tuple) else forced(key)
                if self.interpreting:
                    return fixed
                return self.fastest(key, candidates(), run, reference, device)

            self.choices[key] = tune() if family in self.forced else self.choose(key, make, run, tune)
        return self.choices[key]

    def choose(self, key: tuple, make: type, run: Callable, tune: Callable[[], object]):
        """The table's choice for `key` where it still runs here, else `tune()`'s, then stored."""
        if self.interpreting:
            return tune()
        if torch.cuda.is_current_stream_capturing():  # timing and compiling cannot happen inside a graph
            raise RuntimeError(f"a Triton kernel met the shape {key} for the first time during CUDA-graph capture; "
                               "run the step once before capturing it (the runner's warm-up run does)")
        stored = self.table.lookup(key)
        if stored is not MISSING:
            if stored is None:
                return REFERENCE
            try:
                config = make(**stored)
                run(config)  # compiles it
                torch.cuda.synchronize()  # and runs it
                return config
            except Exception as e:  # a stale or foreign entry: tune afresh  # noqa: BLE001
                logging.getLogger(__name__).warning("stored kernel choice %s for %s does not run here (%s): "
                                                    "tuning it again", stored, key, reason(e))
        choice = tune()
        if key not in self.failures:  # a shape where nothing compiled is tried again in the next process
            self.table.record(key, None if choice is REFERENCE else choice._asdict())
        return choice

    def fastest(self, key: tuple, candidates: list, run: Callable, reference: Callable[[], object] | None,
                device: torch.device):
        """The fastest candidate, or REFERENCE when `reference` beats every one or none compiles (failures[key])."""
        started = time.perf_counter()
        best, best_ms, errors = REFERENCE, float("inf"), []
        if reference is not None:
            reference()
            best_ms = self.time_ms(reference, device)
        for config in candidates:
            try:
                run(config)  # compiles
                torch.cuda.synchronize()
            except Exception as e:  # a candidate this Triton or GPU rejects: try the next  # noqa: BLE001
                errors.append(f"{config}: {reason(e)}")
                continue
            if (ms := self.time_ms(lambda: run(config), device)) < best_ms:
                best, best_ms = config, ms
        if len(errors) == len(candidates):  # no configuration compiled: the torch path runs
            self.failures[key] = "; ".join(errors)
        self.seconds[key] = time.perf_counter() - started
        return best


_CURRENT: list[KernelTuner] = []  # the innermost `use`; the process's tuner at the bottom, made on first use


def current() -> KernelTuner:
    if not _CURRENT:
        _CURRENT.append(KernelTuner())
    return _CURRENT[-1]


@contextlib.contextmanager
def use(tuner: KernelTuner):
    current()
    _CURRENT.append(tuner)
    try:
        yield tuner
    finally:
        _CURRENT.remove(tuner)
