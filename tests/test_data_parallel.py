"""Data-parallel training: 2 gloo processes on the CPU take the 1-process run's steps at the same global batch,
and a checkpoint written with one number of processes resumes with another."""

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
import torch
import yaml

from specdraft.plumbing.config import load_config
from specdraft.plumbing.data_parallel import accumulation_per_process, launch
from specdraft.models.loading import load_base_weights, load_tokenizer
from specdraft.data.prompts import prompt_messages
from specdraft.stages.base_models import build_model, train_tokenizer
from specdraft.stages.train import prompt_completion, sft_lora, train_target
from tests.test_workflow import micro_config
from tests.training_runs import KillAfter, train_tiny

TEXTS = ["Natalia sold 48/2 = 24 clips in May. #### 72", "48/2=24; 48+24=72 #### 72",
         "Think step by step to answer the following question."] * 20
# 16 problems, 2 a micro-step, 4 micro-steps a step: a global batch of 8, 2 steps an epoch; no dropout, whose
# masks no two processes draw alike.
EXAMPLES = [prompt_completion(prompt_messages(f"What is {a}+{b}?", "cod"), f"{a}+{b}={a + b} " * (1 + a % 3)
                              + f"#### {a + b}", enable_thinking=False) for a, b in zip(range(10, 26), range(40, 56))]
TRAINING = {"epochs": 2, "batch_size": 2, "gradient_accumulation_steps": 4, "learning_rate": 0.01,
            "max_length": 256, "save_steps": 1,
            "lora": {"r": 4, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}}


def training(num_gpus: int):
    return load_config({"train_target": {**TRAINING, "num_gpus": num_gpus}}).train_target


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tokenizer")
    train_tokenizer(TEXTS, vocab_size=300).save_pretrained(path)
    return str(path)


def losses(history: list[dict]) -> list[float]:
    return [h["loss"] for h in history if "loss" in h]


@pytest.mark.slow
def test_two_processes_take_the_first_step_of_one_at_the_same_global_batch(tmp_path, tokenizer_dir):
    one = train_tiny(tokenizer_dir, EXAMPLES, training(1), str(tmp_path / "one"),
                     gradients_path=str(tmp_path / "one.pt"))
    two = launch(train_tiny, dict(tokenizer_dir=tokenizer_dir, examples=EXAMPLES, cfg=training(2),
                                  out_dir=str(tmp_path / "two"), gradients_path=str(tmp_path / "two.pt")),
                 2, on_gpus=False)
    expected, got = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    assert got.keys() == expected.keys() and any("lora_B" in k for k in expected)
    for name in expected:  # float32, summed in another order: a few ulps apart
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-7)
    assert any(float(g.abs().max()) > 1e-3 for g in expected.values())  # not a comparison of zeros
    first = [h for h in one if "grad_norm" in h][0]["grad_norm"], [h for h in two if "grad_norm" in h][0]["grad_norm"]
    assert first[1] == pytest.approx(first[0], rel=1e-5)  # the norm before clipping: the same scale too
    assert len(losses(two)) == len(losses(one)) == 4
    assert losses(two)[:2] == pytest.approx(losses(one)[:2], rel=1e-5)
    stats = json.loads((tmp_path / "two" / "train_stats.json").read_text())
    assert stats["num_processes"] == 2 and stats["gradient_accumulation_steps_per_process"] == 2
    assert len(stats["peak_allocated_gib_per_process"]) == 2
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no half-written adapter left


@pytest.mark.slow
def test_a_checkpoint_of_two_processes_resumes_in_one(tmp_path, tokenizer_dir, caplog):
    kwargs = dict(tokenizer_dir=tokenizer_dir, examples=EXAMPLES, out_dir=str(tmp_path / "adapter"),
                  checkpoint_dir=str(tmp_path / "checkpoints"))
    with pytest.raises(RuntimeError, match="failed in its data-parallel processes"):
        launch(train_tiny, dict(kwargs, cfg=training(2), kill_after=3), 2, on_gpus=False)
    assert not (tmp_path / "adapter").exists()
    assert [p.name for p in (tmp_path / "checkpoints").glob("checkpoint-*")] == ["checkpoint-2"]
    with caplog.at_level("INFO", logger="specdraft.stages.train"):
        train_tiny(cfg=training(1), **kwargs)
    assert "(step 2)" in caplog.text
    stats = json.loads((tmp_path / "adapter" / "train_stats.json").read_text())
    assert (stats["resumed_from_step"], stats["num_steps"], stats["num_processes"]) == (2, 4, 1)
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.slow
def test_the_stage_resumes_a_one_process_checkpoint_in_two(tmp_path, tokenizer_dir):
    tokenizer = load_tokenizer(tokenizer_dir)
    build_model(load_config({}).tiny.target, len(tokenizer), 256, seed=0).save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    with open(tmp_path / "train.jsonl", "w") as f:
        for e in EXAMPLES:
            f.write(json.dumps({"messages": e["prompt"] + e["completion"]}) + "\n")
    # The stage's own model and examples, killed after 3 steps as a killed job would be.
    model = load_base_weights(tmp_path / "base", dtype=torch.float32, device=torch.device("cpu"))
    model.train()
    with pytest.raises(KeyboardInterrupt):
        sft_lora(model, tokenizer, EXAMPLES, training(1), tmp_path / "adapter", seed=0,
                 checkpoint_dir=tmp_path / "checkpoints", callbacks=(KillAfter(3),))
    assert [p.name for p in (tmp_path / "checkpoints").glob("checkpoint-*")] == ["checkpoint-2"]
    train_target(str(tmp_path / "base"), str(tmp_path / "train.jsonl"), str(tmp_path / "adapter"), training(2),
                 dtype="float32", device="cpu", seed=0, gpu=load_config({}).gpu, enable_thinking=False,
                 checkpoint_dir=str(tmp_path / "checkpoints"))
    stats = json.loads((tmp_path / "adapter" / "train_stats.json").read_text())
    assert (stats["resumed_from_step"], stats["num_steps"], stats["num_processes"]) == (2, 4, 2)
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    assert not (tmp_path / "checkpoints").exists()


def test_a_global_batch_that_does_not_split_evenly_is_refused_before_any_model_loads(tmp_path):
    cfg = load_config({"train_target": {"gradient_accumulation_steps": 3, "num_gpus": 2}}).train_target
    with pytest.raises(ValueError, match=r"train_target.gradient_accumulation_steps \(3\) must be a multiple of "
                                         r"train_target.num_gpus \(2\)"):
        train_target("no-such-base", str(tmp_path / "missing.jsonl"), str(tmp_path / "adapter"), cfg,
                     dtype="float32", device="cpu", seed=0, gpu=load_config({}).gpu, enable_thinking=False)
    assert accumulation_per_process(8, 4, "train_draft") == 2


@pytest.mark.slow
def test_the_workflow_trains_the_target_in_two_processes(tmp_path, repo):

    config = micro_config(repo)
    config["train_target"].update({"num_gpus": 2, "gradient_accumulation_steps": 2})
    (tmp_path / "micro.yaml").write_text(yaml.safe_dump(config))
    result = subprocess.run([sys.executable, "-m", "snakemake", "results/cod_easy/seed0/target_adapter", "-s",
                             str(repo / "Snakefile"), "--directory", str(tmp_path), "--cores", "2", "--resources",
                             "gpu=2", "--configfile", str(tmp_path / "micro.yaml")],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    log = (tmp_path / "logs/train_target/cod_easy/seed0.log").read_text()
    assert "models.device is cpu: the job takes none" in log and "launching 2 data-parallel processes" in log
    assert " rank 0 INFO " in log  # the processes' lines land in the job's log
    stats = json.loads((tmp_path / "results/cod_easy/seed0/target_adapter/train_stats.json").read_text())
    assert stats["num_processes"] == 2 and stats["gradient_accumulation_steps_per_process"] == 1


@pytest.mark.slow
def test_the_processes_of_a_killed_job_end_with_it(tmp_path, repo):
    code = ("from specdraft.plumbing.data_parallel import launch; from tests.training_runs import sleep_forever; "
            "launch(sleep_forever, {}, 2, on_gpus=False)")
    job = subprocess.Popen([sys.executable, "-c", code],
                           cwd=repo, env=dict(os.environ, PYTHONPATH=str(repo)))
    deadline = time.time() + 120
    while len(workers := psutil.Process(job.pid).children(recursive=True)) < 3 and time.time() < deadline:
        time.sleep(0.2)  # torchrun and its two workers
    assert len(workers) >= 3, workers
    job.send_signal(signal.SIGKILL)  # as the kernel's OOM killer ends a job
    job.wait(timeout=30)
    gone, alive = psutil.wait_procs(workers, timeout=60)
    left = [p.cmdline() for p in alive]
    for process in alive:  # none, unless this test fails: leave no process behind even then
        process.kill()
    assert not left
