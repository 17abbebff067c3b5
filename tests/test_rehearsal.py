"""configs/rehearsal.yaml's path on a CPU: models.source random, scaled down, through Snakemake to merged models."""

import json
import signal
import subprocess
import sys
import time

import psutil
import pytest
import yaml

from tests.test_workflow import micro_config

pytestmark = pytest.mark.slow  # runs the workflow's DAG through Snakemake


def test_random_models_run_the_dag_to_merged_checkpoints(tmp_path, repo):
    config = yaml.safe_load((repo / "configs/rehearsal.yaml").read_text())
    micro = micro_config(repo)
    config.update({"data": micro["data"], "distill": micro["distill"], "bench": micro["bench"],
                   "baseline": {"enabled": False}})
    config["models"].update({"dtype": "float32", "device": "cpu", "random_overrides": {
        "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2,
        "intermediate_size": 64}})
    for role in ("train_target", "train_draft"):
        config[role] = {**micro[role], "save_steps": 1}
    (tmp_path / "rehearsal.yaml").write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "snakemake", "merge", "-s",
               str(repo / "Snakefile"), "--directory", str(tmp_path), "--cores", "1", "--configfile",
               str(tmp_path / "rehearsal.yaml")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]

    base = tmp_path / "results/random_base/target"
    assert json.loads((base / "random_init.json").read_text())["seed"] == 0
    assert not list(base.glob("*.safetensors"))  # weightless: drawn by each stage
    for role in ("target", "draft"):
        stats = json.loads((tmp_path / f"results/cod_easy/seed0/{role}_adapter/train_stats.json").read_text())
        assert stats["run"]["num_tokens"] > 0 and stats["num_params"] > 0
    assert not (tmp_path / "results/cod_easy/seed0/checkpoints/target").exists()  # cleaned after success
    from transformers import AutoModelForCausalLM

    for role in ("target", "draft"):
        merged = AutoModelForCausalLM.from_pretrained(tmp_path / f"results/cod_easy/seed0/{role}_merged")
        assert merged.config.vocab_size == 152064 and merged.config.hidden_size == 32  # draft: target's rows


def test_killed_train_target_job_resumes_from_its_checkpoint_when_snakemake_reruns_it(tmp_path, repo):
    config = micro_config(repo)
    config["train_target"].update({"epochs": 60, "save_steps": 1})  # 120 short steps: time to kill it mid-way
    (tmp_path / "micro.yaml").write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "snakemake", "results/cod_easy/seed0/target_adapter", "-s", str(repo / "Snakefile"),
               "--directory", str(tmp_path), "--cores", "1", "--configfile", str(tmp_path / "micro.yaml")]
    checkpoints = tmp_path / "results/cod_easy/seed0/checkpoints/target"
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 300
    while not list(checkpoints.glob("checkpoint-*/trainer_state.json")) and process.poll() is None \
            and time.time() < deadline:
        time.sleep(0.05)
    # The job dies mid-training (as when the kernel's OOM killer or a crash ends it); Snakemake sees it fail.
    jobs = [p for p in psutil.Process(process.pid).children(recursive=True) if "train_target" in " ".join(p.cmdline())]
    assert jobs, "no train_target job running"
    for job in jobs:
        job.send_signal(signal.SIGKILL)
    assert process.wait(timeout=120) != 0
    assert not (tmp_path / "results/cod_easy/seed0/target_adapter").exists(), "training finished before the kill"
    saved = max(int(p.parent.name.split("-")[1]) for p in checkpoints.glob("checkpoint-*/trainer_state.json"))

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    log = (tmp_path / "logs/train_target/cod_easy/seed0.log").read_text()
    resumed = int(log.split("resuming from ")[1].split("(step ")[1].split(")")[0])
    assert resumed >= saved >= 1
    stats = json.loads((tmp_path / "results/cod_easy/seed0/target_adapter/train_stats.json").read_text())
    assert stats["resumed_from_step"] == resumed and stats["num_steps"] == 120
    assert not checkpoints.exists()
