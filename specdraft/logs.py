"""Route a workflow step's logging, warnings and stderr to its Snakemake log file."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def log_to(path: str) -> Iterator[None]:
    """Send the root logger, Python warnings, stdout and stderr to `path` for the duration of the block."""
    with (open(path, "w", encoding="utf-8") as stream, contextlib.redirect_stderr(stream),
          contextlib.redirect_stdout(stream)):
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
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
            root.removeHandler(handler)
            sys.stdout.flush()
            sys.stderr.flush()
