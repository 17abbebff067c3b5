"""The Snakemake workflow end to end on a micro configuration: the whole DAG, an interruption, a resume."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def micro_config(repo: Path) -> dict:
    shape = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
             "intermediate_size": 32}
    training = {"epochs": 1, "batch_size": 2, "gradient_accumulation_steps": 1, "max_length": 512,
                "lora": {"r": 2, "target_modules": ["q_proj", "v_proj"]}}
    return {
        "styles": ["cod"], "scenarios": ["easy"],
        "models": {"source": "tiny", "dtype": "float32", "device": "cpu"},
        "tiny": {"vocab_size": 400, "max_position_embeddings": 512, "pretrain_steps": 3, "pretrain_batch_size": 2,
                 "target": {**shape, "vocab_multiple": 64}, "draft": {**shape, "vocab_multiple": 8}},
        "seeds": [0],
        "data": {"gsm8k": {"kind": "local", "path": str(repo / "data/raw/gsm8k")},
                 "math": {"kind": "local", "path": str(repo / "data/raw/math")},
                 "rewrites": None, "test_sets": None, "num_train": 4, "num_test": 2},
        "train_target": training, "train_draft": training,
        "distill": {"max_new_tokens": 8, "batch_size": 4},
        "bench": {"num_problems": 2, "num_speculative_tokens": [1, 3], "max_new_tokens": 8},
    }


def snakemake(repo: Path, workdir: Path, *args: str) -> list[str]:
    return [*SNAKEMAKE, "-s", str(repo / "Snakefile"), "--directory", str(workdir), "--cores", "2",
            "--configfile", str(workdir / "micro.yaml"), *args]


@pytest.fixture
def workdir(tmp_path, repo):
    (tmp_path / "micro.yaml").write_text(yaml.safe_dump(micro_config(repo)))
    return tmp_path


def statuses(output: str) -> dict[str, str]:
    """`snakemake --summary`'s status column per output file ("ok", "params changed", ...).

    Not `--list-params-changes`: in Snakemake 9.27 it also lists one unchanged output of every job.
    """
    rows = [line.split("\t") for line in output.splitlines() if line.count("\t") >= 5]
    return {row[0]: row[4] for row in rows[1:]}


def artifacts(workdir: Path) -> dict[str, float]:
    """Every finished artifact and its modification time."""
    found = {}
    for pattern in ("data/processed/*/*.jsonl", "results/base/*", "results/*/seed*/*_adapter",
                    "results/*/seed*/*.jsonl", "results/*/seed*/benchmark.csv", "results/*/benchmark.csv",
                    "results/summary.csv"):
        for path in workdir.glob(pattern):
            found[str(path.relative_to(workdir))] = path.stat().st_mtime_ns
    return found


def ctrl_c_ends_the_child():
    """Run in the child before exec: SIGINT back to its default, so Python's KeyboardInterrupt handler is
    installed even when pytest runs from a background shell, which starts its children with SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_interrupted_sweep_resumes_from_the_missing_artifacts(workdir, repo):
    # Interrupt once the distill job has started: the target adapter before it is then complete.
    distill_started = workdir / "logs/distill/cod_easy/seed0.log"
    process = subprocess.Popen(snakemake(repo, workdir, "--cores", "1"), stdout=subprocess.DEVNULL,
                               stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=ctrl_c_ends_the_child)
    deadline = time.time() + 300
    while not distill_started.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert distill_started.exists(), "the first run never reached the distill job"
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the whole process group, as a terminal sends it
    process.wait(timeout=120)
    before = artifacts(workdir)
    finished = {"results/base/target", "data/processed/cod_easy/train.jsonl", "results/cod_easy/seed0/target_adapter"}
    assert finished <= set(before)
    assert "results/summary.csv" not in before
    assert not list(workdir.rglob(".*.tmp-*")), "an interrupted job left a temporary output behind"

    resumed = subprocess.run(snakemake(repo, workdir), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = artifacts(workdir)
    for path, mtime in before.items():
        assert after[path] == mtime, f"{path} was rebuilt although it was complete"

    rows = list(csv.DictReader(open(workdir / "results/summary.csv")))
    assert {(r["experiment"], r["k"]) for r in rows} == {(e, k) for e in ("cod_easy", "untrained_easy")
                                                          for k in ("1", "3")}
    assert all(float(r["matches_target"]) == 1.0 for r in rows)  # greedy speculative == target greedy
    # The experiment's table: every seed's rows (here one seed) with a seed column, and every seed's conditions.
    bench = list(csv.DictReader(open(workdir / "results/cod_easy/benchmark.csv")))
    assert len(bench) == 2 * 2 and all(int(r["num_new_tokens"]) <= 8 for r in bench)
    assert {r["seed"] for r in bench} == {"0"} and {r["repeats"] for r in bench} == {"3"}
    assert all(r["truncated"] == "False" for r in bench if int(r["num_new_tokens"]) < 8)  # ended at eos
    run = json.loads((workdir / "results/cod_easy/benchmark_run.json").read_text())
    assert set(run["seeds"]) == {"0"} and run["seeds"]["0"]["conditions"]["seed"] == 0
    assert run["seeds"]["0"]["conditions"]["device_name"] == "cpu" and run["seeds"]["0"]["throughput"] is None
    assert all((workdir / f"results/plots/{m}.png").stat().st_size > 0
               for m in ("latency_per_correct", "cod_vs_cot", "speedup", "acceptance_rate", "tokens_per_answer"))

    # Offline acceptance predicts every benchmark row exactly (greedy, float32); the transfer matrix is built.
    check = list(csv.DictReader(open(workdir / "results/acceptance_check.csv")))
    assert len(check) == 2 * 2 and all(r["num_matching"] == r["num_problems"] == "2" and r["seed"] == "0"
                                       for r in check)
    transfer = list(csv.DictReader(open(workdir / "results/transfer_easy.csv")))
    assert {(r["target"], r["draft"]) for r in transfer} == {(t, d) for t in ("cod", "untrained")
                                                              for d in ("cod", "untrained")}

    again = subprocess.run(snakemake(repo, workdir, "-n"), capture_output=True, text=True, timeout=120)
    assert "Nothing to be done" in again.stdout + again.stderr


    # Run honesty: what seed, engine and dtype change is rerun, nothing else (Snakemake compares params).
    def params_changed(*config: str) -> set[str]:
        result = subprocess.run(snakemake(repo, workdir, "--summary", "--config", *config),
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-3000:]
        return {path for path, status in statuses(result.stdout).items() if status == "params changed"}

    served = {"results/cod_easy/seed0/distilled.jsonl", "results/transfer_easy.csv", "results/plots/transfer_easy.png"}
    served |= {f"results/{experiment}/seed0/{name}" for experiment in ("cod_easy", "untrained_easy")
               for name in ("target_outputs.jsonl", "acceptance.csv", "acceptance_prediction.csv", "benchmark.csv",
                            "benchmark_run.json")}
    trained = {"results/cod_easy/seed0/target_adapter", "results/cod_easy/seed0/draft_adapter"}
    assert params_changed("engine=auto") == set()
    assert params_changed("engine=hf") == served
    assert params_changed("models={dtype: bfloat16}") == served | trained
    assert {"results/base/target", "data/processed/cod_easy/train.jsonl"} <= params_changed("seed=1")

def test_bad_config_fails_before_any_job(workdir, repo):
    config = micro_config(repo)
    config["styles"] = ["cox"]
    (workdir / "micro.yaml").write_text(yaml.safe_dump(config))
    result = subprocess.run(snakemake(repo, workdir), capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "invalid config at styles.0: 'cox' is not allowed; allowed values: ['cot', 'cod']" in result.stderr
    assert not (workdir / "results").exists() and not (workdir / "data").exists()
