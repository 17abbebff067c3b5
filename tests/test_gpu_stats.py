"""Stage statistics: throughput and MFU arithmetic, the JSON beside an output, bench throughput from its CSV."""

import csv
import json

import pytest
import torch

from specdraft.plumbing.gpu_stats import measure_stage, peak_bf16_flops, throughput, write_bench_stats

CPU = torch.device("cpu")


def test_mfu_is_tokens_per_second_times_flops_per_token_over_the_peak():
    record = throughput(4096, 2.0, 6 * 14.77e9, "NVIDIA H200")
    assert record["tokens_per_second"] == 2048.0
    assert record["mfu"] == pytest.approx(2048 * 6 * 14.77e9 / 989.4e12, abs=1e-4)
    assert throughput(10, 1.0, 60.0, "some unknown GPU")["mfu"] is None  # no peak known: no MFU, not a guess
    assert peak_bf16_flops("NVIDIA A100-SXM4-80GB") == 312e12


def test_measure_stage_writes_only_when_the_stage_succeeds(tmp_path):
    with measure_stage(tmp_path / "out.stats.json", "distill", CPU) as stats:
        stats.num_tokens = 300
    record = json.loads((tmp_path / "out.stats.json").read_text())
    assert record["stage"] == "distill" and record["num_tokens"] == 300 and record["tokens_per_second"] > 0
    with pytest.raises(RuntimeError), measure_stage(tmp_path / "failed.stats.json", "distill", CPU):
        raise RuntimeError("stage failed")
    assert not (tmp_path / "failed.stats.json").exists()


def test_bench_stats_sum_tokens_and_seconds_per_mode(tmp_path):
    path = tmp_path / "benchmark.csv"
    rows = [{"id": "a", "k": 2, "num_new_tokens": 10, "target_num_new_tokens": 10, "target_seconds": 1.0, "speculative_seconds": 0.5},
            {"id": "a", "k": 4, "num_new_tokens": 10, "target_num_new_tokens": 10, "target_seconds": 1.0, "speculative_seconds": 0.25},
            {"id": "b", "k": 2, "num_new_tokens": 30, "target_num_new_tokens": 30, "target_seconds": 3.0, "speculative_seconds": 1.5},
            {"id": "b", "k": 4, "num_new_tokens": 30, "target_num_new_tokens": 30, "target_seconds": 3.0, "speculative_seconds": 1.75}]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    record = write_bench_stats(path, CPU)
    assert record["target"]["tokens_per_second"] == 10.0  # 40 tokens in 4 s, each problem counted once
    assert record["speculative_k2"]["tokens_per_second"] == 20.0 and record["speculative_k4"]["num_tokens"] == 40
    assert json.loads((tmp_path / "benchmark.csv.stats.json").read_text()) == record
