"""Route a workflow step's logging, warnings and stderr to its Snakemake log file; progress to the console too.

The console gets progress lines and the package's warnings, prefixed with their job; progress bars are off.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

PROGRESS_SECONDS = 5.0
PROGRESS_LOGGER = "specdraft.progress"

# Raised inside transformers/TRL/PEFT for arguments they pass themselves; nothing in our call can avoid them.
UNFIXABLE_WARNINGS = [
    (FutureWarning, r"`(is_)?gradient_checkpointing` is deprecated"),
]

# Read by tqdm and huggingface_hub (which transformers' bars follow) when they are first imported.
QUIET_ENVIRONMENT = {"TQDM_DISABLE": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


def quiet_libraries() -> None:
    """Switch off third-party progress bars and filter the warnings listed in `UNFIXABLE_WARNINGS`."""
    for name, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    # Already imported (e.g. in a test process): the environment is read at import, so switch them off directly.
    if "huggingface_hub" in sys.modules:
        sys.modules["huggingface_hub"].utils.disable_progress_bars()
    if "transformers" in sys.modules:  # through sys.modules: this module must not import transformers itself
        sys.modules["transformers"].utils.logging.disable_progress_bar()
    for category, message in UNFIXABLE_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)


def job_name(log_path: str | os.PathLike) -> str:
    """`logs/train_target/cod_easy.log` -> `train_target/cod_easy`: the console prefix of a job's lines."""
    path = Path(log_path).with_suffix("")
    parts = path.parts[1:] if path.parts and path.parts[0] == "logs" else path.parts[-2:]
    return "/".join(parts)


class _ConsoleLines(logging.Filter):

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == PROGRESS_LOGGER:
            return True
        return record.name.startswith("specdraft.") and record.levelno >= logging.WARNING


@contextlib.contextmanager
def log_to(path: str, console=None) -> Iterator[None]:
    """Send the root logger, Python warnings, stdout and stderr to `path` for the duration of the block; progress
    lines and the package's warnings also to `console` (default: the stderr in place when the block starts)."""
    quiet_libraries()
    console = console if console is not None else sys.stderr
    with (open(path, "w", encoding="utf-8") as stream, contextlib.redirect_stderr(stream),
          contextlib.redirect_stdout(stream)):
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        echo = logging.StreamHandler(console)
        echo.setFormatter(logging.Formatter(f"[{job_name(path)}] %(message)s"))
        echo.addFilter(_ConsoleLines())
        echo.setLevel(logging.INFO)
        root = logging.getLogger()
        root.addHandler(handler)
        root.addHandler(echo)
        previous_level = root.level
        root.setLevel(logging.INFO)
        logging.captureWarnings(True)
        try:
            yield
        except BaseException:
            logging.exception("step failed")
            raise
        finally:
            logging.captureWarnings(False)
            root.setLevel(previous_level)
            root.removeHandler(echo)
            root.removeHandler(handler)
            sys.stdout.flush()
            sys.stderr.flush()


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = round(seconds)
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


class Progress:
    """A long loop's progress with rate and ETA, one line every `every` seconds and at the first and last update."""

    def __init__(self, what: str, total: int, *, unit: str = "step", every: float = PROGRESS_SECONDS,
                 logger: logging.Logger | None = None, clock=time.monotonic):
        self.what, self.total, self.unit, self.every = what, total, unit, every
        self.log = logger or logging.getLogger(PROGRESS_LOGGER)
        self.clock = clock
        self.start = clock()
        self.last: float | None = None

    def update(self, done: int, **values: float) -> bool:
        """Record that `done` of `total` units are finished; log a line when due. Returns whether it logged."""
        now = self.clock()
        finished = done >= self.total
        if self.last is not None and not finished and now - self.last < self.every:
            return False
        self.last = now
        elapsed = now - self.start
        rate = done / elapsed if elapsed > 0 else math.inf
        remaining = (self.total - done) / rate if 0 < rate < math.inf else (0.0 if finished else math.nan)
        shown = "".join(f", {name.replace('_', ' ')} {value:.4g}" for name, value in values.items())
        self.log.info("%s: %s %d/%d (%.0f%%)%s, %.2f %s/s, %s elapsed, %s", self.what, self.unit, done, self.total,
                      100 * done / max(1, self.total), shown, rate if math.isfinite(rate) else 0.0, self.unit,
                      _duration(elapsed), "done" if finished else f"ETA {_duration(remaining)}")
        return True
