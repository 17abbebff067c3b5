"""The bench stage at bench.concurrency > 1: the same per-problem results as at batch 1, plus per-run
throughput, TTFT and ITL in benchmark_run.json."""

import csv
import json

import pytest

from specdraft.plumbing.config import load_config
from specdraft.data.prompts import prompt_messages

QUESTIONS = ["What is 48+24?", "Natalia sold 48/2 clips?", "What is 7*6?", "How many is 3+4+5?", "What is 9-2?"]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A tiny target/draft pair and its tokenizer, saved as a hub model would be."""
    from specdraft.models.loading import pad_vocab
    from specdraft.stages.base_models import build_model, train_tokenizer

    tokenizer = train_tokenizer(["What is 48+24? 48+24=72 #### 72", "Natalia sold 48/2 = 24 clips."] * 10, 300)
    config = load_config({})
    target = build_model(config.tiny.target, len(tokenizer), 512, seed=0).eval()
    draft = build_model(config.tiny.draft, len(tokenizer), 512, seed=1).eval()
    pad_vocab(draft, target.config.vocab_size)
    root = tmp_path_factory.mktemp("pair")
    for name, model in (("target", target), ("draft", draft)):
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
    return root, target, draft, tokenizer


def records():
    return [{"id": str(i), "scenario": "easy", "answer": "72",
             "messages": prompt_messages(q, "cod") + [{"role": "assistant", "content": ""}]}
            for i, q in enumerate(QUESTIONS)]


def test_concurrent_rows_equal_batch_one_rows(pair):
    from specdraft.stages.bench import run_benchmark
    from specdraft.stages.bench_concurrent import run_concurrent_benchmark
    from specdraft.models.engine_choice import serve

    _, target, draft, tokenizer = pair
    one = load_config({"bench": {"num_speculative_tokens": [1, 3], "max_new_tokens": 12}}).bench
    many = load_config({"bench": {"num_speculative_tokens": [1, 3], "max_new_tokens": 12, "concurrency": 2}}).bench
    expected, _ = run_benchmark(*(serve(m, "native", max_seq_len=256, weights="model_dtype")
                                  for m in (target, draft)), tokenizer,
                                records(), one, seed=0, enable_thinking=False)
    rows, metrics, mismatches = run_concurrent_benchmark(
        *(serve(m, "native", max_seq_len=256, max_batch_size=2, weights="model_dtype") for m in (target, draft)),
        tokenizer, records(),
        many, seed=0, enable_thinking=False)
    assert mismatches == 0 and metrics["repeats"] == 3
    assert [(r.id, r.k) for r in rows] == [(r.id, r.k) for r in expected]
    for mine, theirs in zip(rows, expected):
        assert mine.matches_target
        assert (mine.num_new_tokens, mine.num_accepted, mine.num_steps, mine.answer, mine.truncated) == (
            theirs.num_new_tokens, theirs.num_accepted, theirs.num_steps, theirs.answer, theirs.truncated)
    assert set(metrics["runs"]) == {"target", "k1", "k3"}
    for run in metrics["runs"].values():
        assert run["num_new_tokens"] == sum(r.num_new_tokens for r in rows) // 2
        assert 0 < run["ttft_mean_s"] < run["wall_seconds"] and run["throughput_tok_s"] > 0
        assert len(run["wall_seconds_repeats"]) == 3 and run["wall_seconds"] == sorted(run["wall_seconds_repeats"])[1]
    assert metrics["runs"]["k3"]["throughput_speedup"] == pytest.approx(
        metrics["runs"]["k3"]["throughput_tok_s"] / metrics["runs"]["target"]["throughput_tok_s"])
    assert metrics["runs"]["k3"]["acceptance_rate"] == pytest.approx(
        sum(r.num_accepted for r in rows if r.k == 3) / sum(r.num_proposed for r in rows if r.k == 3))


def test_bench_stage_writes_the_csv_and_the_metrics_json(pair, tmp_path):
    from specdraft.stages.bench import bench
    from specdraft.plumbing.jsonl import write_jsonl

    root = pair[0]
    write_jsonl(tmp_path / "test.jsonl", records())
    cfg = load_config({"bench": {"num_speculative_tokens": [2], "max_new_tokens": 8, "concurrency": 3}}).bench
    common = dict(target_adapter=None, draft_adapter=None, engine_weights="model_dtype", dtype="float32", device="cpu", seed=0,
                  gpu=load_config({}).gpu, enable_thinking=False)
    out = tmp_path / "results" / "benchmark.csv"
    bench(str(root / "target"), str(root / "draft"), str(tmp_path / "test.jsonl"), str(out), cfg, engine="auto",
          **common)
    with open(out) as f:
        assert [row["id"] for row in csv.DictReader(f)] == [str(i) for i in range(len(QUESTIONS))]
    run = json.loads((out.parent / "benchmark_run.json").read_text())
    assert run["conditions"] == {"concurrency": 3, "num_speculative_tokens": [2], "engine": "native",
                                 "engine_weights": "model_dtype", "dtype": "float32", "device_name": "cpu", "repeats": 3,
                                 "max_new_tokens": 8, "temperature": 0.0, "seed": 0}
    metrics = run["throughput"]
    assert metrics["concurrency"] == 3 and set(metrics["runs"]) == {"target", "k2"}
    with pytest.raises(ValueError, match="native engine"):
        bench(str(root / "target"), str(root / "draft"), str(tmp_path / "test.jsonl"), str(tmp_path / "x.csv"), cfg,
              engine="hf", **common)
    assert not (tmp_path / "x.csv").exists()


def test_concurrency_is_validated():
    from specdraft.plumbing.config import ConfigError

    assert load_config({}).bench.concurrency == 1
    with pytest.raises(ConfigError, match="bench.concurrency: 0 is less than the minimum of 1"):
        load_config({"bench": {"concurrency": 0}})


def test_the_qwen3_config_is_valid_and_runs_the_seed_setting(repo):
    import yaml
    from snakemake.utils import update_config

    config = yaml.safe_load((repo / "config.yaml").read_text())
    update_config(config, yaml.safe_load((repo / "configs" / "qwen3.yaml").read_text()))  # as --configfile
    cfg = load_config(config)
    assert (cfg.models.target, cfg.models.draft) == ("Qwen/Qwen3-14B", "Qwen/Qwen3-0.6B")
    assert (cfg.bench.concurrency, cfg.bench.num_speculative_tokens, cfg.bench.temperature) == (16, (5,), 0.0)
