"""A one-node SLURM cluster on this machine, from Debian's slurm-wlm: munged, slurmctld and slurmd.

Everything lives in one directory (configuration, munge key and socket, state, logs) and on ports picked free,
so it touches nothing of a system SLURM. The node offers one fake GPU as a generic resource (GRES) so that a
job's `--gpus=1` / `--gres=gpu:1` is scheduled against it. Every daemon is started by this process, in the
foreground, and `stop()` cancels the jobs, stops the daemons and checks that no process of this cluster is
left (each one carries the cluster's SLURM_CONF in its environment).

    python tests/local_slurm/cluster.py start /tmp/slurm    # prints the `export SLURM_CONF=...` to use
    python tests/local_slurm/cluster.py check /tmp/slurm
    python tests/local_slurm/cluster.py stop /tmp/slurm

Completed jobs are recorded by SLURM's job completion log (`jobcomp/filetxt`, no database needed):
`jobs()` parses it, one dict per job.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

INSTALL = Path(__file__).with_name("install.sh")
NODE = "specdraft-node"
PARTITION = "debug"
DAEMONS = ("munged", "slurmctld", "slurmd")


class ClusterError(RuntimeError):
    pass


def install() -> str | None:
    """Install slurm-wlm and munge when missing; None when they are there, else why they cannot be."""
    result = subprocess.run(["bash", str(INSTALL)], capture_output=True, text=True)
    return None if result.returncode == 0 else (result.stderr.strip() or f"{INSTALL} exited {result.returncode}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_resources() -> tuple[int, int]:
    """(CPUs, RealMemory in MB) as slurmd itself reports them (`slurmd -C`)."""
    fields = dict(item.split("=", 1) for item in subprocess.run(
        ["slurmd", "-C"], capture_output=True, text=True, check=True).stdout.split() if "=" in item)
    return int(fields["CPUs"]), int(fields["RealMemory"])


class LocalSlurm:
    """Start, check and stop a one-node cluster whose files live under `root`."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self.conf = self.root / "slurm.conf"
        # Inside a job, the executor plugin runs the rule with a nested `srun` whose environment it strips of
        # SLURM_* variables, SLURM_CONF too: a real cluster's configuration is at /etc/slurm. A shim `srun`
        # first on PATH points it at this cluster's configuration instead.
        self.env = {**os.environ, "SLURM_CONF": str(self.conf),
                    "PATH": f"{self.root / 'bin'}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"}
        self.processes: dict[str, subprocess.Popen] = {}

    # -- set-up ---------------------------------------------------------------------------------------------
    def write_config(self) -> None:
        for sub in ("state", "spool", "munge", "bin"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        srun = self.root / "bin" / "srun"
        srun.write_text(f'#!/bin/sh\nSLURM_CONF={shlex.quote(str(self.conf))} exec {shutil.which("srun")} "$@"\n')
        srun.chmod(0o755)
        os.chmod(self.root / "munge", 0o700)
        key = self.root / "munge" / "munge.key"
        if not key.exists():
            key.write_bytes(os.urandom(1024))
            os.chmod(key, 0o600)
        cpus, memory_mb = node_resources()
        host = socket.gethostname().split(".")[0]
        r = self.root
        # proctrack/linuxproc and task/none: no cgroups (containers have none to give). Jobs stay known to
        # squeue for MinJobAge seconds after they end, which the executor plugin's squeue status check needs.
        self.conf.write_text(f"""\
ClusterName=specdraft
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={r}/munge/munge.socket
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/slurmctld.log
SlurmdLogFile={r}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={r}/jobcomp.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
MinJobAge=600
SchedulerParameters=sched_interval=2
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName={NODE} NodeAddr=127.0.0.1 NodeHostname={host} CPUs={cpus} RealMemory={memory_mb} Gres=gpu:1 State=UNKNOWN
PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
""")
        # A fake GPU: SLURM drops a GPU without a device file, so /dev/null stands in for one; SLURM counts and
        # allocates it like a real one.
        (self.root / "gres.conf").write_text(f"AutoDetect=off\nNodeName={NODE} Name=gpu File=/dev/null Count=1\n")

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.root / f"{name}.out", "ab")
        self.processes[name] = subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()

    def start(self, timeout: float = 60) -> None:
        if self.processes:
            raise ClusterError("already started")
        self.write_config()
        m = self.root / "munge"
        self._spawn("munged", ["munged", "--foreground", "--force", f"--key-file={m}/munge.key",
                               f"--socket={m}/munge.socket", f"--pid-file={m}/munged.pid",
                               f"--log-file={m}/munged.log", f"--seed-file={m}/munged.seed"])
        self._wait(lambda: (m / "munge.socket").exists(), timeout, "munged never opened its socket")
        self._spawn("slurmctld", ["slurmctld", "-D", "-c", "-f", str(self.conf)])
        self._wait(lambda: self._ok(["scontrol", "ping"], "UP"), timeout, "slurmctld never answered a ping")
        self._spawn("slurmd", ["slurmd", "-D", "-f", str(self.conf), "-N", NODE])
        self._wait(self._node_idle, timeout, "the node never became idle")

    def _ok(self, argv: list[str], expect: str) -> bool:
        result = subprocess.run(argv, env=self.env, capture_output=True, text=True)
        return result.returncode == 0 and expect in result.stdout

    def _node_idle(self) -> bool:
        return self._ok(["sinfo", "--noheader", "-n", NODE, "-o", "%t"], "idle")

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise ClusterError(f"{name} exited with {process.returncode}: {self.tail(name)}")
            if ready():
                return
            time.sleep(0.5)
        raise ClusterError(f"{what} within {timeout:.0f} s: {self.tail('slurmctld')} {self.tail('slurmd')}")

    def tail(self, name: str, lines: int = 8) -> str:
        texts = [p.read_text(errors="replace").splitlines()[-lines:]
                 for p in (self.root / f"{name}.out", self.root / f"{name}.log") if p.exists()]
        return " | ".join(line for text in texts for line in text)

    # -- use ------------------------------------------------------------------------------------------------
    def check(self) -> None:
        """Raise unless the controller answers for the node and the node offers its GPU."""
        node = subprocess.run(["scontrol", "show", "node", NODE], env=self.env, capture_output=True, text=True)
        if node.returncode != 0:
            raise ClusterError(f"scontrol show node failed: {node.stderr.strip()}")
        if "Gres=gpu:1" not in node.stdout:
            raise ClusterError(f"the node has no gpu GRES: {node.stdout}")

    def active_jobs(self) -> list[str]:
        """Ids of the jobs pending, running or completing."""
        out = subprocess.run(["squeue", "--noheader", "-t", "PD,R,CG", "-o", "%i"], env=self.env,
                             capture_output=True, text=True).stdout
        return out.split()

    def jobs(self) -> list[dict[str, str]]:
        """Every completed job, from SLURM's job completion log: JobId, Name, JobState, WorkDir, ..."""
        path = self.root / "jobcomp.log"
        if not path.exists():
            return []
        return [dict(field.split("=", 1) for field in shlex.split(line) if "=" in field)
                for line in path.read_text().splitlines() if line.strip()]

    def show_job(self, job_id: str) -> dict[str, str]:
        """`scontrol show job` as a dict (jobs stay known for MinJobAge seconds after they end)."""
        out = subprocess.run(["scontrol", "show", "job", "-o", job_id], env=self.env, capture_output=True,
                             text=True, check=True).stdout
        return dict(field.split("=", 1) for field in out.split() if "=" in field)

    # -- tear-down ------------------------------------------------------------------------------------------
    def stop(self, timeout: float = 30) -> None:
        """Cancel every job, stop the daemons, and make sure no process of this cluster is left."""
        if self.processes.get("slurmctld") and self.processes["slurmctld"].poll() is None:
            subprocess.run(["scancel", "--full", "--partition", PARTITION], env=self.env, capture_output=True)
            deadline = time.monotonic() + timeout
            while self.active_jobs() and time.monotonic() < deadline:
                time.sleep(0.5)
        for name in reversed(DAEMONS):  # slurmd first, munged last: the others need it to shut down cleanly
            process = self.processes.pop(name, None)
            if process is None or process.poll() is not None:
                continue
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        left = self.leftovers()
        for pid in left:  # job steps (slurmstepd) of jobs that were not cancelled in time
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if left:
            raise ClusterError(f"processes of this cluster outlived its daemons and were killed: {left}")

    def leftovers(self) -> list[int]:
        """Processes that carry this cluster's SLURM_CONF: daemons, job steps and jobs."""
        marker = f"SLURM_CONF={self.conf}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if marker in environ:
                found.append(int(entry.name))
        return found

    def __enter__(self) -> "LocalSlurm":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("start", "check", "stop"):
        print(__doc__, file=sys.stderr)
        return 2
    command, root = argv[0], Path(argv[1])
    cluster = LocalSlurm(root)
    if command == "start":
        reason = install()
        if reason:
            print(reason, file=sys.stderr)
            return 3
        cluster.__enter__()  # on a failed start, stops what did start
        # The daemons are this process's children in their own sessions: they keep running after it exits.
        pids = {name: p.pid for name, p in cluster.processes.items()}
        (cluster.root / "daemons").write_text(" ".join(f"{n}={p}" for n, p in pids.items()))
        print(f"export SLURM_CONF={cluster.conf}")
        return 0
    if command == "check":
        cluster.check()
        print(f"{NODE}: up, gpu:1")
        return 0
    # stop: the daemons were started by an earlier `start`; their pids are in root/daemons.
    pids = dict(item.split("=") for item in (cluster.root / "daemons").read_text().split())
    subprocess.run(["scancel", "--full", "--partition", PARTITION], env=cluster.env, capture_output=True)
    for name in reversed(DAEMONS):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pids[name]), signal.SIGTERM)
    deadline = time.monotonic() + 30
    while cluster.leftovers() and time.monotonic() < deadline:
        time.sleep(0.5)
    left = cluster.leftovers()
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    print(f"stopped{'; killed ' + str(left) if left else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
