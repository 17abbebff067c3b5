"""The machine's GPUs as a pool: each GPU job takes devices of its own and exports them before CUDA starts.

Snakemake's `--resources gpu=N` bounds how many GPUs jobs take, not which: a device is held by a `flock`, which the
kernel drops when its holder ends however it ends, so a killed job gives its devices back.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

POLL_SECONDS = 0.2
WAIT_LOG_SECONDS = 60.0
NVIDIA_SMI_LINE = re.compile(r"^GPU (\d+): (.+?) \(UUID: ([^)]+)\)")


@dataclass(frozen=True)
class Gpu:
    id: str  # as CUDA_VISIBLE_DEVICES names it: an index in nvidia-smi's (PCI bus) order, or a UUID
    name: str | None = None
    uuid: str | None = None

    def describe(self) -> str:
        known = ", ".join(v for v in (self.name, self.uuid) if v and v != self.id)
        return f"GPU {self.id}" + (f" ({known})" if known else "")


def parse_nvidia_smi(text: str) -> list[Gpu]:
    """The GPUs `nvidia-smi -L` lists (`GPU 0: NVIDIA H200 (UUID: GPU-...)`); its MIG lines are left out."""
    return [Gpu(m[1], m[2], m[3]) for m in map(NVIDIA_SMI_LINE.match, text.splitlines()) if m]


def driver_gpus(proc_dir: Path) -> list[Gpu]:
    """The GPUs the NVIDIA kernel driver lists under /proc (one folder per PCI address, in nvidia-smi's order)."""
    gpus = []
    for index, folder in enumerate(sorted(proc_dir.iterdir()) if proc_dir.is_dir() else []):
        fields = dict(line.split(":", 1) for line in (folder / "information").read_text().splitlines() if ":" in line)
        name, uuid = fields.get("Model", "").strip(), fields.get("GPU UUID", "").strip()
        gpus.append(Gpu(str(index), name or None, uuid or None))
    return gpus


def machine_gpus(proc_dir: Path = Path("/proc/driver/nvidia/gpus")) -> list[Gpu]:
    """Every GPU of the machine from nvidia-smi (else the driver), so that CUDA is not initialised here."""
    try:
        done = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
    except (FileNotFoundError, PermissionError):
        return driver_gpus(proc_dir)
    except subprocess.TimeoutExpired:
        log.warning("nvidia-smi -L did not answer within 60 s: no GPU taken from it")
        return []
    if done.returncode != 0:
        log.warning("nvidia-smi -L failed (exit code %d): %s", done.returncode, done.stderr.strip())
        return []
    return parse_nvidia_smi(done.stdout)


def visible_gpus(devices: list[int | str] | None, environ: MutableMapping[str, str]) -> list[Gpu]:
    """The pool: `gpu.devices` if set, else the devices CUDA_VISIBLE_DEVICES names, else every GPU of the machine."""
    listed = machine_gpus()
    if devices is None and "CUDA_VISIBLE_DEVICES" not in environ:
        return listed
    known = {g.id: g for g in listed} | {g.uuid: g for g in listed}
    ids = [str(d) for d in devices] if devices is not None else \
        [d.strip() for d in environ["CUDA_VISIBLE_DEVICES"].split(",") if d.strip()]
    return [Gpu(i, known[i].name, known[i].uuid) if i in known else Gpu(i) for i in ids]  # named as written


class Lease:
    """Devices held by this process; `release` (or the process's end) gives them back."""

    def __init__(self, held: list[tuple[Gpu, int]]):
        self.gpus = [gpu for gpu, _ in held]
        self._fds = [fd for _, fd in held]

    def environment(self) -> dict[str, str]:
        # CUDA numbers devices fastest first unless told otherwise; nvidia-smi's indices follow the PCI bus.
        return {"CUDA_VISIBLE_DEVICES": ",".join(g.id for g in self.gpus), "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}

    def describe(self) -> str:
        return ", ".join(g.describe() for g in self.gpus)

    def release(self) -> None:
        for fd in self._fds:
            os.close(fd)  # closing the last descriptor of a file drops its flock
        self._fds = []

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class GpuPool:
    """Devices shared by the processes of one machine through lock files in `lock_dir`/<host name>/ (a lock
    directory on a shared file system may serve several machines, whose GPU 0s are different devices)."""

    def __init__(self, gpus: list[Gpu], lock_dir: str | os.PathLike, *, wait_seconds: float | None):
        self.gpus = gpus
        self.lock_dir = Path(lock_dir) / socket.gethostname()
        self.wait_seconds = wait_seconds

    def lock_path(self, gpu: Gpu) -> Path:
        return self.lock_dir / (re.sub(r"[^A-Za-z0-9_.-]", "_", gpu.id) + ".lock")

    def acquire(self, num_gpus: int, job: str) -> Lease:
        """Wait until `num_gpus` devices are free and take them all at once (no job holds some while it waits
        for more, so none waits on another forever), logging every minute who holds them."""
        if num_gpus > len(self.gpus):
            raise ValueError(f"{job} needs {num_gpus} GPUs but the pool has {len(self.gpus)}: "
                             f"{', '.join(g.describe() for g in self.gpus)} (gpu.devices, CUDA_VISIBLE_DEVICES)")
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        start = last_log = time.monotonic()
        while (held := self._try_take(num_gpus, job)) is None:
            waited = time.monotonic() - start
            if self.wait_seconds is not None and waited >= self.wait_seconds:
                raise TimeoutError(f"{job}: no {num_gpus} free GPU(s) after {waited:.0f} s (gpu.wait_seconds); "
                                   f"held by: {self.holders()}")
            if time.monotonic() - last_log >= WAIT_LOG_SECONDS:
                log.info("%s waits for %d free GPU(s) (%.0f s so far); held by: %s", job, num_gpus, waited,
                         self.holders())
                last_log = time.monotonic()
            time.sleep(POLL_SECONDS)
        return Lease(held)

    def _try_take(self, num_gpus: int, job: str) -> list[tuple[Gpu, int]] | None:
        held = []
        for gpu in self.gpus:
            fd = os.open(self.lock_path(gpu), os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{job} (pid {os.getpid()}, since {time.strftime('%H:%M:%S')})".encode(), 0)
            held.append((gpu, fd))
            if len(held) == num_gpus:
                return held
        Lease(held).release()
        return None

    def holders(self) -> str:
        busy = []
        for gpu in self.gpus:
            path = self.lock_path(gpu)
            with contextlib.suppress(FileNotFoundError), open(path, "rb") as f:
                try:
                    fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:
                    busy.append(f"{gpu.describe()}: {path.read_text(errors='replace') or '?'}")
        return "; ".join(busy) or "none (freed meanwhile)"


def check_devices_used(gpus: list[Gpu], job: str) -> None:
    """After a job that started CUDA: log whether it saw the devices it was given (CUDA may have started early)."""
    torch = sys.modules.get("torch")
    expected = [g.uuid.removeprefix("GPU-") for g in gpus if g.uuid and g.uuid.startswith("GPU-")]
    if torch is None or not torch.cuda.is_initialized() or len(expected) != len(gpus):
        return
    seen = [str(torch.cuda.get_device_properties(i).uuid).removeprefix("GPU-")
            for i in range(torch.cuda.device_count())]
    if seen == expected:
        log.info("%s ran on its own %s", job, ", ".join(g.describe() for g in gpus))
    else:
        log.warning("%s saw the GPUs %s, not its own %s: CUDA started before CUDA_VISIBLE_DEVICES was set", job,
                    seen, expected)


@contextlib.contextmanager
def gpus_for_job(num_gpus: int, *, devices: list[int | str] | None, lock_dir: str, wait_seconds: float | None,
                 job: str, environ: MutableMapping[str, str] = os.environ) -> Iterator[list[Gpu]]:
    """For the block, this job's own `num_gpus` GPUs exported in `environ`; [] when the pool is off. Under SLURM the
    scheduler's choice is kept unless it holds more GPUs than the job asks for (one allocation for many jobs)."""
    if num_gpus <= 0:
        yield []
        return
    if "torch" in sys.modules and sys.modules["torch"].cuda.is_initialized():
        raise RuntimeError(f"{job}: CUDA was initialised before the job's GPUs were chosen, so "
                           "CUDA_VISIBLE_DEVICES would be ignored")
    if "SLURM_JOB_ID" in environ:
        gpus = visible_gpus(None, environ) if "CUDA_VISIBLE_DEVICES" in environ else []
        if len(gpus) <= num_gpus:
            log.info("%s: SLURM job %s, its GPUs as the scheduler assigned them: %s (CUDA_VISIBLE_DEVICES=%s)", job,
                     environ["SLURM_JOB_ID"], ", ".join(g.describe() for g in gpus) or "none",
                     environ.get("CUDA_VISIBLE_DEVICES", "unset"))
            yield gpus
            return
        log.info("%s: SLURM job %s holds %d GPUs for several jobs: this one takes its own from them", job,
                 environ["SLURM_JOB_ID"], len(gpus))
    else:
        gpus = visible_gpus(devices, environ)
    if not gpus:
        log.info("%s: no GPU on this machine (none from nvidia-smi or the NVIDIA driver, no CUDA_VISIBLE_DEVICES or "
                 "gpu.devices): the device pool is off", job)
        yield []
        return
    pool = GpuPool(gpus, lock_dir, wait_seconds=wait_seconds)
    with pool.acquire(num_gpus, job) as lease:
        exported = {k: v for k, v in lease.environment().items() if k == "CUDA_VISIBLE_DEVICES" or k not in environ}
        before = {key: environ.get(key) for key in exported}
        environ.update(exported)
        log.info("%s holds %s of the pool's %d (CUDA_VISIBLE_DEVICES=%s)", job, lease.describe(), len(gpus),
                 exported["CUDA_VISIBLE_DEVICES"])
        try:
            yield lease.gpus
            check_devices_used(lease.gpus, job)
        finally:
            for key, value in before.items():
                if value is None:
                    environ.pop(key, None)
                else:
                    environ[key] = value
