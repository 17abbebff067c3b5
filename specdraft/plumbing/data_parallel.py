"""Data-parallel runs: one function launched in N processes by torchrun, each process on a GPU of its own.

Hugging Face's Trainer wraps the model itself; this module starts the processes, places them and lets rank 0 write.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import pickle
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Process:
    rank: int
    local_rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def this_process() -> Process:
    env = os.environ
    return Process(int(env.get("RANK", 0)), int(env.get("LOCAL_RANK", 0)), int(env.get("WORLD_SIZE", 1)))


def is_launched() -> bool:
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def process_device(device):
    """`device` as this process uses it: a launched process on CUDA takes cuda:LOCAL_RANK of the job's GPUs."""
    if device.type != "cuda" or not is_launched():
        return device
    import torch

    index = this_process().local_rank
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def accumulation_per_process(gradient_accumulation_steps: int, num_processes: int, key: str) -> int:
    """Micro-steps per process that keep the global batch at batch_size x `gradient_accumulation_steps`."""
    if gradient_accumulation_steps % num_processes:
        raise ValueError(f"{key}.gradient_accumulation_steps ({gradient_accumulation_steps}) must be a multiple of "
                         f"{key}.num_gpus ({num_processes}): the global batch batch_size x "
                         "gradient_accumulation_steps is split evenly over the processes")
    return gradient_accumulation_steps // num_processes


def on_main_process(compute: Callable[[], Any]) -> Any:
    """`compute()` run by rank 0 alone, its value sent to every process (the process group must be started)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return compute()
    value = [compute() if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(value, src=0)
    return value[0]


def gather(value: Any) -> list[Any]:
    """`value` of every process, in rank order ([value] when nothing launched this one)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    values = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def _fd(stream) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):  # a stream without a file (pytest's capture): inherit ours
        return None


def _die_with_parent() -> None:
    """Between fork and exec: SIGTERM the launcher when the job's process dies; torchrun passes it on (Linux only)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG


def launch(function: Callable[..., Any], kwargs: dict[str, Any], num_processes: int, *, on_gpus: bool) -> Any:
    """What rank 0 returned from `function(**kwargs)` run in `num_processes` torchrun processes, logging to ours."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if on_gpus and visible is not None and 0 < len([d for d in visible.split(",") if d.strip()]) < num_processes:
        raise ValueError(f"{num_processes} data-parallel processes need {num_processes} GPUs, but this job has "
                         f"CUDA_VISIBLE_DEVICES={visible}: ask for them (resources gpu={num_processes})")
    with tempfile.TemporaryDirectory(prefix="specdraft-launch-") as scratch:
        call, result = Path(scratch) / "call.pkl", Path(scratch) / "result.pkl"
        call.write_bytes(pickle.dumps((function, kwargs, str(result))))
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={num_processes}",
                   "-m", __name__, str(call)]
        # The workers import `function` from where this process found it.
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        log.info("launching %d data-parallel processes: %s", num_processes, " ".join(command))
        sys.stdout.flush()
        sys.stderr.flush()
        # A killed job must not leave workers that still use its GPUs, or write its output after Snakemake gave up.
        done = subprocess.run(command, env=env, stdout=_fd(sys.stdout), stderr=_fd(sys.stderr),
                              preexec_fn=_die_with_parent)
        if done.returncode != 0:
            raise RuntimeError(f"{function.__qualname__} failed in its data-parallel processes (torchrun exit code "
                               f"{done.returncode}): their tracebacks are above in the log")
        return pickle.loads(result.read_bytes())


def _worker(call_path: str) -> None:
    from specdraft.plumbing.logs import quiet_libraries

    process = this_process()
    quiet_libraries()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"%(asctime)s rank {process.rank} %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO if process.is_main else logging.WARNING, handlers=[handler])
    logging.captureWarnings(True)
    function, kwargs, result_path = pickle.loads(Path(call_path).read_bytes())
    value = function(**kwargs)
    if process.is_main:
        Path(result_path).write_bytes(pickle.dumps(value))
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    _worker(sys.argv[1])
