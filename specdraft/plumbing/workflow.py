"""What every Snakemake script does before it calls the package: logs, GPUs, threads, typed configuration."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

from specdraft.plumbing.config import Config, load_config
from specdraft.plumbing.gpu_pool import gpus_for_job
from specdraft.plumbing.logs import job_name, log_to


@contextlib.contextmanager
def step(snakemake) -> Iterator[Config]:
    """Run a rule's body with its log file, its own GPUs, its thread count and the typed configuration."""
    # Progress bars are noise in a log file; tqdm reads this when it is first imported.
    os.environ["TQDM_DISABLE"] = "1"
    os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
    with log_to(snakemake.log[0]):
        cfg = load_config(snakemake.config)
        num_gpus = int(snakemake.resources.get("gpu", 0))
        if num_gpus and cfg.models.device == "cpu":
            logging.getLogger(__name__).info("models.device is cpu: the job takes none of the machine's GPUs")
            num_gpus = 0
        with gpus_for_job(num_gpus, devices=cfg.gpu.devices,
                          lock_dir=cfg.gpu.lock_dir, wait_seconds=cfg.gpu.wait_seconds,
                          job=job_name(snakemake.log[0])):
            try:
                import torch  # after CUDA_VISIBLE_DEVICES is set, though torch reads it only when CUDA starts
            except ImportError:  # the report environment (envs/report.yaml) has no torch and needs none
                pass
            else:
                torch.set_num_threads(max(1, int(snakemake.threads)))
            yield cfg
