"""benchmarks/rehearsal_report.py: the rehearsal's tables come from the measured JSON, the extrapolation from
the configs' counts."""

import json
import subprocess
import sys


def test_report_tables_and_extrapolation_come_from_the_json(tmp_path, repo):
    adapter = tmp_path / "run/results/cod_easy/target_adapter"
    adapter.mkdir(parents=True)
    # 32 examples x 1 epoch in 10 s of training at 1,000 tokens/s; the job took 70 s (60 s fixed cost).
    train = {"stage": "train", "device": "cuda", "device_name": "NVIDIA H200", "peak_allocated_gib": 37.5,
             "peak_reserved_gib": 40.0, "num_examples": 32, "epochs": 1,
             "run": {"num_tokens": 10000, "seconds": 10.0, "tokens_per_second": 1000.0},
             "steady": {"num_tokens": 9000, "seconds": 9.0, "tokens_per_second": 1000.0, "mfu": 0.25}}
    (adapter / "train_stats.json").write_text(json.dumps(train))
    (tmp_path / "bench/train_target").mkdir(parents=True)
    (tmp_path / "bench/train_target/cod_easy.tsv").write_text("s\th:m:s\tmax_rss\n70.0\t0:01:10\t1000\n")
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
    assert "| train_target | cod_easy | 70.0 | 37.50 | 40.00 | 1,000.0 tok/s, MFU 0.250 |" in text
    assert "| target_bf16 | target | 4 x 1024 | none | yes | – | 3,680.0 | 0.330 | 37.40 | – |" in text
    assert "out of memory / failed" in text and "989.4 TFLOP/s" in text
    # config.yaml: 2000 problems x 1 epoch = 62.5 x the rehearsal's 32 -> 625 s of work + 60 s fixed, 6 jobs
    assert "| train_target | cod_easy | 60.0 | 625.0 | 685.0 | 6 | 1.14 |" in text
    assert json.loads((tmp_path / "docs/rehearsal/train_target_cod_easy.json").read_text()) == train
