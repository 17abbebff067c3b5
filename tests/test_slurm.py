"""The workflow on a SLURM cluster: a controller and a compute node started on this machine from Debian's
slurm-wlm, the jobs submitted by snakemake-executor-plugin-slurm through profiles/slurm. Every job must go
through sbatch with the resources its rule declares, and the results must equal a local run's, timings aside.

It installs slurm-wlm and munge with apt-get when they are missing (tests/local_slurm/install.sh) and is
skipped, saying why, where that cannot be done. A few minutes: the demo's DAG, one experiment, tiny counts.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from local_slurm.cluster import LocalSlurm, install

pytestmark = pytest.mark.slow  # starts a SLURM controller and node, and runs the workflow through them

# Columns and keys that are clock readings: they differ between any two runs.
# Columns read off the clock, or computed from what was (speedups, costs, latencies, the fastest k).
TIMING_COLUMN = re.compile(r"seconds|speedup|_ms$|tokens_per_s|duration|_cost$|latency|best_k|ttft|itl")
TIMING_KEY = re.compile(r"runtime|per_second|_seconds$|^time$|^seconds$|^measured_at$")
# Files whose bytes hold the run's own paths or clock (pickled training arguments, plots and tables of timings).
SKIPPED_FILES = {"training_args.bin", "speedup.png", "predicted_speedup.png", "latency_per_correct.png",
                 "cod_vs_cot.png", "summary.html", "cod_vs_cot.html", "published.html"}


def small_demo(repo: Path) -> dict:
    """demo/config.yaml trimmed to one experiment (cod_easy, plus its untrained baseline) and tiny counts."""
    config = yaml.safe_load((repo / "demo/config.yaml").read_text())
    shape = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
             "intermediate_size": 32}
    training = {"epochs": 1, "batch_size": 2, "max_length": 512, "lora": {"r": 2, "alpha": 4}}
    config.update(styles=["cod"], scenarios=["easy"], train_target=training, train_draft=training,
                  distill={"max_new_tokens": 8, "batch_size": 4},
                  bench={"num_problems": 2, "num_speculative_tokens": [1, 3], "max_new_tokens": 8})
    config["tiny"].update(vocab_size=400, max_position_embeddings=512, pretrain_steps=3, pretrain_batch_size=2,
                          target={**shape, "vocab_multiple": 64}, draft={**shape, "vocab_multiple": 8})
    config["data"].update(num_train=4, num_test=2)
    config["seeds"] = [0]
    for source in ("gsm8k", "math"):  # the bundled sample, wherever the run's working directory is
        config["data"][source]["path"] = str(repo / config["data"][source]["path"])
    return config


@pytest.fixture(scope="module")
def workspace():
    """A directory of this test's own: pytest's tmp_path is pruned by concurrent pytest runs of the same user."""
    path = Path(tempfile.mkdtemp(prefix="specdraft-slurm-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(workspace):
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        pytest.skip("snakemake-executor-plugin-slurm is not installed: pip install -e .[test]")
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("a local SLURM node (slurmd) runs as root on Linux; this test is not root here")
    reason = install()
    if reason:
        pytest.skip(f"slurm-wlm cannot be installed here: {reason}")
    with LocalSlurm(workspace / "cluster") as slurm:  # stopping raises if a process of the cluster outlived it
        slurm.check()
        yield slurm
    assert not slurm.leftovers()


def run(repo: Path, workdir: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "--directory", str(workdir),
               "--configfile", str(workdir.parent / "small.yaml"), *args]
    environment = {**(env or os.environ), "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=1200)
    if result.returncode != 0:
        logs = "".join(f"\n--- {log}\n{log.read_text()[-1500:]}" for log in sorted(workdir.rglob("*.log"))
                       if "/log/" not in str(log))  # the rules' logs and SLURM's job outputs
        pytest.fail(f"{' '.join(args)}\n{result.stderr[-4000:]}{logs}")
    return result


def jobs_run(workdir: Path) -> set[tuple[str, str]]:
    """(rule, wildcards joined by '_') of every job a run executed: each writes its benchmark file."""
    found = set()
    for path in (workdir / "results/benchmarks").rglob("*.tsv"):
        parts = path.relative_to(workdir / "results/benchmarks").with_suffix("").parts
        found.add((parts[0], "_".join(p.removeprefix("seed") for p in parts[1:])))  # bench/cod_easy/seed0
    return found


def comparable(path: Path):
    """What must be equal between two runs: the contents, with clock readings left out."""
    if path.suffix == ".csv":
        rows = list(csv.DictReader(path.open()))
        return [{k: v for k, v in row.items() if not TIMING_COLUMN.search(k)} for row in rows
                if row.get("statistic") != "speedup"]
    if path.suffix == ".json":
        return drop_timings(json.loads(path.read_text()))
    return path.read_bytes()


def drop_timings(value):
    if isinstance(value, dict):
        # PEFT saves target_modules from a set: its order follows the process's string hash seed.
        return {k: sorted(v) if k == "target_modules" and isinstance(v, list) else drop_timings(v)
                for k, v in value.items() if not TIMING_KEY.search(k)}
    if isinstance(value, list):
        return [drop_timings(v) for v in value]
    return value


def results(workdir: Path) -> dict[str, Path]:
    return {str(p.relative_to(workdir)): p for top in ("results", "data/processed") for p in (workdir / top).rglob("*")
            if p.is_file() and "benchmarks" not in p.parts and p.name not in SKIPPED_FILES}


def declared_resources(job_output: Path) -> dict[str, int]:
    """What Snakemake asked for a job, as the job's own output (SLURM's log of it) prints it."""
    text = job_output.read_text()
    resources = dict(item.split("=", 1) for item in re.search(r"^\s*resources: (.*)$", text, re.M).group(1).split(", "))
    threads = re.search(r"^\s*threads: (\d+)$", text, re.M)  # printed when not 1
    return {"threads": int(threads.group(1)) if threads else 1, "mem_mb": int(resources["mem_mb"]),
            "runtime": int(resources["runtime"]), "gpu": int(resources.get("gpu", 0))}


def slurm_time(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}:00"


def test_sweep_on_slurm_equals_a_local_run(cluster, workspace, repo):
    (workspace / "small.yaml").write_text(yaml.safe_dump(small_demo(repo)))
    local, on_slurm = workspace / "local", workspace / "slurm"
    run(repo, local, "--cores", "2")
    run(repo, on_slurm, "--workflow-profile", str(repo / "profiles/slurm"),
        "--default-resources", "slurm_partition=debug",
        # This cluster has no accounting database: no account to pass, job states from squeue.
        "--slurm-no-account", "--slurm-status-command", "squeue",
        "--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "2",
        "--latency-wait", "5", "--slurm-keep-successful-logs", env=cluster.env)

    # Every job of the local run ran on SLURM, once, and completed, with what its rule declares as its request.
    expected = jobs_run(local)
    assert jobs_run(on_slurm) == expected and len(expected) == 16
    completed = cluster.jobs()  # SLURM's job completion log; this cluster runs this test's jobs only
    assert {job["JobState"] for job in completed} == {"COMPLETED"} and len(completed) == len(expected)
    submitted, gpu_jobs = set(), 0
    for job in completed:
        shown = cluster.show_job(job["JobId"])
        print(" ".join(f"{key}={shown.get(key)}" for key in (  # shown with `pytest -s`
            "JobId", "Comment", "JobState", "NumCPUs", "MinMemoryNode", "TimeLimit", "TresPerJob", "RunTime")))
        rule, _, wildcards = shown["Comment"].removeprefix("rule_").partition("_wildcards_")
        submitted.add((rule, wildcards))
        [job_output] = (on_slurm / ".snakemake/slurm_logs").rglob(f"{job['JobId']}.log")
        declared = declared_resources(job_output)
        assert shown["NumCPUs"] == str(declared["threads"]), (rule, shown["NumCPUs"], declared)
        assert shown["MinMemoryNode"] == f"{declared['mem_mb']}M", (rule, shown["MinMemoryNode"], declared)
        assert shown["TimeLimit"] == slurm_time(declared["runtime"]), (rule, shown["TimeLimit"], declared)
        assert ("gres:gpu:1" in shown.get("TresPerJob", "")) == (declared["gpu"] == 1), (rule, declared)
        gpu_jobs += declared["gpu"]
    assert submitted == expected
    # train_target, distill, train_draft, bench, baseline, acceptance, acceptance_baseline, transfer
    assert gpu_jobs == 8
    for log in ("logs/base_models.log", "logs/train_target/cod_easy/seed0.log", "logs/bench/cod_easy/seed0.log"):
        assert (on_slurm / log).stat().st_size > 0

    # The same results, file for file, timings aside.
    local_results, slurm_results = results(local), results(on_slurm)
    assert set(slurm_results) == set(local_results)
    for name, path in local_results.items():
        assert comparable(slurm_results[name]) == comparable(path), f"{name} differs between SLURM and local"

    # And the report renders, with the workflow description page.
    run(repo, on_slurm, "--report", str(workspace / "report.html"))
    assert "Chain of Draft" in (workspace / "report.html").read_text()
