"""The device pool: no device held by two live jobs at once, killed jobs give theirs back, SLURM's choice kept."""

import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from specdraft.plumbing import gpu_pool
from specdraft.plumbing.gpu_pool import Gpu, GpuPool, gpus_for_job

REPO = Path(__file__).resolve().parents[1]
DEVICES = ["0", "1", "2"]
NVIDIA_SMI = """GPU 0: NVIDIA H200 (UUID: GPU-aaaa)
GPU 1: NVIDIA H200 (UUID: GPU-bbbb)
  MIG 1g.18gb     Device  0: (UUID: MIG-cccc)
"""

# A GPU job: takes `needs` devices, notes in the shared log when it holds and when it gives back each one.
FAKE_JOB = textwrap.dedent("""
    import os, sys, time
    from specdraft.plumbing.gpu_pool import Gpu, GpuPool
    lock_dir, events, needs, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    pool = GpuPool([Gpu(d) for d in {devices}], lock_dir, wait_seconds=120)
    def note(what, gpus):
        with open(events, "a") as f:  # O_APPEND: one line a write, in the order the writes happen
            f.write("".join(f"{{what}} {{g.id}} {{os.getpid()}}\\n" for g in gpus))
    with pool.acquire(needs, f"job {{os.getpid()}}") as lease:
        note("take", lease.gpus)
        print("holding", flush=True)
        time.sleep(seconds)
        note("give", lease.gpus)
""").format(devices=DEVICES)


def start_job(tmp_path, needs: int, seconds: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", FAKE_JOB, str(tmp_path / "locks"), str(tmp_path / "events"),
                             str(needs), str(seconds)], cwd=REPO, stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))


def test_concurrent_jobs_never_share_a_device(tmp_path):
    jobs = [start_job(tmp_path, needs=1 + i % 2, seconds=0.05 + 0.03 * (i % 4)) for i in range(16)]
    for job in jobs:
        assert job.wait(timeout=120) == 0
    holder, most_held, taken = {}, 0, Counter()
    for line in (tmp_path / "events").read_text().splitlines():
        what, device, pid = line.split()
        if what == "take":
            assert device not in holder, f"device {device} taken by {pid} while {holder.get(device)} holds it"
            holder[device] = pid
            taken[pid] += 1
        else:
            assert holder.pop(device) == pid
        most_held = max(most_held, len(holder))
    assert not holder and sorted(taken.values()) == [1] * 8 + [2] * 8  # every job ran, with what it asked for
    assert most_held >= 2  # jobs did run side by side: the pool was shared, not serialised


def test_a_killed_job_gives_its_devices_back(tmp_path):
    job = start_job(tmp_path, needs=3, seconds=600)
    assert job.stdout.readline() == "holding\n"
    pool = GpuPool([Gpu(d) for d in DEVICES], tmp_path / "locks", wait_seconds=0.5)
    with pytest.raises(TimeoutError, match=rf"held by: GPU 0: job {job.pid} \(pid {job.pid}"):
        pool.acquire(1, "waiting job")
    os.kill(job.pid, signal.SIGKILL)
    job.wait(timeout=30)
    with pool.acquire(3, "next job") as lease:
        assert [g.id for g in lease.gpus] == DEVICES


def test_a_job_asking_for_more_devices_than_the_pool_has_fails_at_once(tmp_path):
    pool = GpuPool([Gpu("0")], tmp_path, wait_seconds=None)
    with pytest.raises(ValueError, match="needs 2 GPUs but the pool has 1: GPU 0"):
        pool.acquire(2, "train_target/cod_easy")


@pytest.fixture
def fake_nvidia_smi(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "nvidia-smi"
    script.write_text(f"#!/bin/sh\ncat <<'EOF'\n{NVIDIA_SMI}EOF\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_each_job_exports_its_own_gpus_and_names_them(tmp_path, fake_nvidia_smi, caplog):
    environ = {"HOME": "/home/x"}
    where = dict(devices=None, lock_dir=str(tmp_path / "locks"), wait_seconds=0)
    with caplog.at_level("INFO", logger="specdraft.plumbing.gpu_pool"):
        with gpus_for_job(1, job="bench/cod_easy", environ=environ, **where) as first:
            assert environ["CUDA_VISIBLE_DEVICES"] == "0" and environ["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
            other = {}
            with gpus_for_job(1, job="distill/cot_easy", environ=other, **where):
                assert other["CUDA_VISIBLE_DEVICES"] == "1"
                with pytest.raises(TimeoutError), gpus_for_job(1, job="third", environ={}, **where):
                    pass
        assert first == [Gpu("0", "NVIDIA H200", "GPU-aaaa")]
    assert environ == {"HOME": "/home/x"}  # restored after the job
    assert "bench/cod_easy holds GPU 0 (NVIDIA H200, GPU-aaaa) of the pool's 2" in caplog.text
    assert "distill/cot_easy holds GPU 1 (NVIDIA H200, GPU-bbbb)" in caplog.text


def test_the_pool_is_gpu_devices_or_cuda_visible_devices_when_set(tmp_path, fake_nvidia_smi):
    where = dict(lock_dir=str(tmp_path / "locks"), wait_seconds=0, job="j")
    environ = {"CUDA_VISIBLE_DEVICES": "1"}
    with gpus_for_job(1, devices=None, environ=environ, **where) as gpus:
        assert gpus == [Gpu("1", "NVIDIA H200", "GPU-bbbb")]
    environ = {"CUDA_VISIBLE_DEVICES": "0,1", "CUDA_DEVICE_ORDER": "FASTEST_FIRST"}
    with gpus_for_job(1, devices=["GPU-bbbb"], environ=environ, **where) as gpus:
        assert environ["CUDA_VISIBLE_DEVICES"] == "GPU-bbbb" and gpus[0].name == "NVIDIA H200"
        assert environ["CUDA_DEVICE_ORDER"] == "FASTEST_FIRST"  # the user's order, kept
    assert environ["CUDA_VISIBLE_DEVICES"] == "0,1"


def test_slurm_assignment_is_kept_unless_it_is_shared_by_several_jobs(tmp_path, fake_nvidia_smi, caplog):
    environ = {"SLURM_JOB_ID": "42", "CUDA_VISIBLE_DEVICES": "1"}
    with caplog.at_level("INFO", logger="specdraft.plumbing.gpu_pool"):
        with gpus_for_job(1, devices=[0], lock_dir=str(tmp_path / "locks"), wait_seconds=0, job="train",
                          environ=environ):
            assert environ == {"SLURM_JOB_ID": "42", "CUDA_VISIBLE_DEVICES": "1"}
    assert not (tmp_path / "locks").exists()  # no lock taken
    assert "SLURM job 42, its GPUs as the scheduler assigned them: GPU 1 (NVIDIA H200, GPU-bbbb)" in caplog.text
    # Snakemake run inside one allocation of two GPUs: each job takes its own from them.
    shared = {"SLURM_JOB_ID": "43", "CUDA_VISIBLE_DEVICES": "0,1"}
    with gpus_for_job(1, devices=None, lock_dir=str(tmp_path / "locks"), wait_seconds=0, job="bench",
                      environ=shared):
        assert shared["CUDA_VISIBLE_DEVICES"] == "0"
    assert shared["CUDA_VISIBLE_DEVICES"] == "0,1"


def test_step_gives_a_gpu_rule_its_device_and_a_cpu_machine_none(tmp_path, fake_nvidia_smi, monkeypatch):
    from specdraft.plumbing.workflow import step

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)

    def job(rule: str, gpu: int) -> SimpleNamespace:
        return SimpleNamespace(log=[str(tmp_path / f"{rule}.log")], config={}, resources={"gpu": gpu}, threads=1)

    with step(job("bench", 1)):
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "0"
        assert (tmp_path / ".snakemake" / "gpu_pool").is_dir()  # gpu.lock_dir's default, under the workdir
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
    assert "holds GPU 0 (NVIDIA H200, GPU-aaaa)" in (tmp_path / "bench.log").read_text()
    with step(job("summary", 0)):
        assert "CUDA_VISIBLE_DEVICES" not in os.environ
    on_cpu = SimpleNamespace(**{**vars(job("merge", 1)), "config": {"models": {"device": "cpu"}}})
    with step(on_cpu):
        assert "CUDA_VISIBLE_DEVICES" not in os.environ
    monkeypatch.setattr(gpu_pool, "machine_gpus", lambda: [])  # a machine without GPUs
    with step(job("distill", 1)):
        assert "CUDA_VISIBLE_DEVICES" not in os.environ
    assert "no GPU on this machine" in (tmp_path / "distill.log").read_text()


def test_without_nvidia_smi_the_driver_lists_the_gpus(tmp_path):
    from specdraft.plumbing.gpu_pool import driver_gpus

    for bus, uuid in (("0000:9b:00.0", "GPU-bbbb"), ("0000:1b:00.0", "GPU-aaaa")):
        (tmp_path / bus).mkdir()
        (tmp_path / bus / "information").write_text(f"Model: \t\t NVIDIA H200\nIRQ:   \t\t 17\nGPU UUID: \t {uuid}\n")
    assert driver_gpus(tmp_path) == [Gpu("0", "NVIDIA H200", "GPU-aaaa"), Gpu("1", "NVIDIA H200", "GPU-bbbb")]
    assert driver_gpus(tmp_path / "absent") == []


def test_a_job_that_saw_other_gpus_than_its_own_is_reported(monkeypatch, caplog):
    from specdraft.plumbing.gpu_pool import check_devices_used

    seen = ["aaaa"]
    cuda = SimpleNamespace(is_initialized=lambda: True, device_count=lambda: len(seen),
                           get_device_properties=lambda i: SimpleNamespace(uuid=seen[i]))
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=cuda))
    with caplog.at_level("INFO", logger="specdraft.plumbing.gpu_pool"):
        check_devices_used([Gpu("0", "NVIDIA H200", "GPU-aaaa")], "bench/cod_easy")
        seen[:] = ["aaaa", "bbbb"]  # every GPU: CUDA started before the job's were exported
        check_devices_used([Gpu("0", "NVIDIA H200", "GPU-aaaa")], "distill/cod_easy")
    assert "bench/cod_easy ran on its own GPU 0 (NVIDIA H200, GPU-aaaa)" in caplog.text
    assert "distill/cod_easy saw the GPUs ['aaaa', 'bbbb'], not its own ['aaaa']" in caplog.text
