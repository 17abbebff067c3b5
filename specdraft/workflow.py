"""What every Snakemake script does before it calls the package: log to the rule's log, set threads, type
the configuration."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from specdraft.config import Config, load_config
from specdraft.logs import log_to


@contextlib.contextmanager
def step(snakemake) -> Iterator[Config]:
    """Run a rule's body with its log file, its thread count and the validated, typed configuration."""
    # Progress bars are noise in a log file; tqdm reads this when it is first imported.
    os.environ["TQDM_DISABLE"] = "1"
    os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
    try:
        import torch
    except ImportError:  # the report environment (envs/report.yaml) has no torch and needs none
        pass
    else:
        torch.set_num_threads(max(1, int(snakemake.threads)))
    with log_to(snakemake.log[0]):
        yield load_config(snakemake.config)
