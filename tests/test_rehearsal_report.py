"""benchmarks/rehearsal_report.py: the rehearsal's tables come from the measured JSON, the extrapolation from
the configs' counts."""

import json
import subprocess
import sys


def test_report_tables_and_extrapolation_come_from_the_json(tmp_path, repo):
    adapter = tmp_path / "run/results/cod_easy/seed0/target_adapter"
    adapter.mkdir(parents=True)
    # 32 examples x 1 epoch in 10 s of training at 1,000 tokens/s; the job took 70 s (60 s fixed cost).
    train = {"stage": "train", "device": "cuda", "device_name": "NVIDIA H200", "peak_allocated_gib": 37.5,
             "peak_reserved_gib": 40.0, "num_examples": 32, "epochs": 1,
             "run": {"num_tokens": 10000, "seconds": 10.0, "tokens_per_second": 1000.0},
             "steady": {"num_tokens": 9000, "seconds": 9.0, "tokens_per_second": 1000.0, "mfu": 0.25}}
    (adapter / "train_stats.json").write_text(json.dumps(train))
    (tmp_path / "bench/train_target/cod_easy").mkdir(parents=True)
    (tmp_path / "bench/train_target/cod_easy/seed0.tsv").write_text("s\th:m:s\tmax_rss\n70.0\t0:01:10\t1000\n")
    mfu = {"command": "python benchmarks/train_mfu.py", "conditions": {"steps": 10},
           "results": [{"variant": "target_bf16", "role": "target", "batch_size": 4, "max_length": 1024,
                        "quantization": "none", "gradient_checkpointing": True, "peak_allocated_gib": 37.4,
                        "steady": {"tokens_per_second": 3680.0, "mfu": 0.33, "peak_flops": 989.4e12}},
                       {"variant": "target_4bit_24gib", "role": "target", "batch_size": 4, "max_length": 1024,
                        "quantization": "4bit", "gradient_checkpointing": True, "memory_gib": 24, "failed": True}]}
    (tmp_path / "mfu.json").write_text(json.dumps(mfu))
    out = tmp_path / "docs/rehearsal.md"
    result = subprocess.run([sys.executable, str(repo / "benchmarks/rehearsal_report.py"), "--workdir",
                             str(tmp_path / "run"), "--mfu", str(tmp_path / "mfu.json"), "--snakemake-benchmarks",
                             str(tmp_path / "bench"), "--out", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert "| train_target | cod_easy/seed0 | 70.0 | 37.50 | 40.00 | 1,000.0 tok/s, MFU 0.250 |" in text
    assert "| target_bf16 | target | 4 x 1024 | none | yes | – | 3,680.0 | 0.330 | 37.40 | – |" in text
    assert "out of memory / failed" in text and "989.4 TFLOP/s" in text
    # config.yaml: 1000 problems x 1 epoch = 31.25 x the rehearsal's 32 -> 312.5 s of work + 60 s fixed,
    # 2 styles x 3 scenarios x 3 seeds = 18 jobs
    assert "| train_target | cod_easy/seed0 | 60.0 | 312.5 | 372.5 | 18 | 1.86 |" in text
    assert json.loads((tmp_path / "docs/rehearsal/train_target_cod_easy_seed0.json").read_text()) == train


def test_one_table_per_capped_card(tmp_path, repo):
    card = tmp_path / "out/24gb"
    (card / "results/cod_easy/seed0").mkdir(parents=True)
    (card / "logs/train_target").mkdir(parents=True)
    (card / "logs/train_target/cod_easy.log").write_text("OutOfMemoryError")  # ran, left no stats: failed
    (card / "run.json").write_text(json.dumps({"card": "24gb", "memory_gib": 21.5, "command": "snakemake ...",
                                               "returncode": 1, "seconds": 300, "machine": "m", "gpu": "NVIDIA H200"}))
    distill = {"stage": "distill", "device_name": "NVIDIA H200", "peak_allocated_gib": 18.25,
               "peak_reserved_gib": 19.0, "planned_gib": 19.5, "load_seconds": 12.5, "batch_size": 20}
    (card / "results/cod_easy/seed0/distilled.jsonl.stats.json").write_text(json.dumps(distill))
    (card / "results/benchmarks/distill/cod_easy").mkdir(parents=True)
    (card / "results/benchmarks/distill/cod_easy/seed0.tsv").write_text("s\th:m:s\n40.0\t0:00:40\n")
    mfu = {"command": "python benchmarks/train_mfu.py", "conditions": {"steps": 1}, "results": []}
    (tmp_path / "mfu.json").write_text(json.dumps(mfu))
    (tmp_path / "run").mkdir()
    out = tmp_path / "docs/rehearsal.md"
    result = subprocess.run([sys.executable, str(repo / "benchmarks/rehearsal_report.py"), "--workdir",
                             str(tmp_path / "run"), "--mfu", str(tmp_path / "mfu.json"), "--card", f"24gb={card}",
                             "--out", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert "## Under a 24 GB card's budget: gpu.memory_gib 21.5" in text and "exit status 1" in text
    assert "| distill | cod_easy/seed0 | done | 40.0 | 18.25 | 19.00 | 19.50 | 12.5 | 20 |" in text
    assert "| train_target | cod_easy/seed0 | failed (log in rehearsal/) |" in text
    assert json.loads((tmp_path / "docs/rehearsal/24gb/results/cod_easy/seed0/distilled.jsonl.stats.json").read_text()) \
        == distill
