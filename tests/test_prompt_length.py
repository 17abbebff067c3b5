"""A prompt longer than the model's context fails distill, bench and training before any model or cache is
sized for it (a 5 MB line once passed prepare and training, then distill was killed at 13.5 GB), naming the
file, the line and the id, and counting the prompts that do not fit."""

import json

import pytest

from specdraft.plumbing.config import load_config
from specdraft.decoding.generation import PromptTooLong
from specdraft.stages.base_models import build_model, train_tokenizer

GPU = load_config({}).gpu


@pytest.fixture
def base(tmp_path):
    tokenizer = train_tokenizer(["What is 48+24? 48+24=72 #### 72", "Natalia sold 48/2 = 24 clips."] * 10, 300)
    config = load_config({})
    model = build_model(config.tiny.draft, len(tokenizer), 128, seed=0)  # a context of 128 positions
    model.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    return str(tmp_path / "base")


def write_records(path, *, long_line: int):
    lines = []
    for i in range(1, 5):
        question = "What is 48+24? " * (200 if i == long_line else 1)
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": "72 #### 72"}]
        lines.append({"id": f"gsm8k/train/{i}", "scenario": "easy", "answer": "72", "messages": messages,
                      "prompt": messages[:1], "completion": "72 #### 72"})
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    return str(path)


def assert_located(error, path, line):
    message = str(error.value)
    assert message.startswith(f"{path}: 1 of 4 prompts are longer than")
    assert f"line {line} (id gsm8k/train/{line}):" in message


def test_distill_rejects_a_prompt_longer_than_the_context(tmp_path, base):
    from specdraft.stages.distill import distill

    train = write_records(tmp_path / "train.jsonl", long_line=3)
    out = tmp_path / "distilled.jsonl"
    with pytest.raises(PromptTooLong) as error:
        distill(base, base, train, str(out), load_config({"distill": {"max_new_tokens": 32}}).distill,
                engine="auto", dtype="float32", device="cpu", seed=0, gpu=GPU, enable_thinking=False,
                engine_weights="model_dtype")
    assert_located(error, train, 3)
    assert "context of 128 less distill.max_new_tokens" in str(error.value)
    assert not out.exists()


def test_training_rejects_a_prompt_longer_than_the_context(tmp_path, base):
    from specdraft.stages.train import train_draft, train_target

    cfg = load_config({}).train_target
    train = write_records(tmp_path / "train.jsonl", long_line=2)
    for train_fn, args in ((train_target, (base, train)), (train_draft, (base, base, train))):
        with pytest.raises(PromptTooLong) as error:
            train_fn(*args, str(tmp_path / "adapter"), cfg, dtype="float32", device="cpu", seed=0, gpu=GPU, enable_thinking=False)
        assert_located(error, train, 2)
        assert not (tmp_path / "adapter").exists()


def test_training_counts_prompts_that_truncation_to_max_length_leaves_no_completion(tmp_path, base, caplog):
    from specdraft.plumbing.jsonl import iter_jsonl
    from specdraft.models.loading import load_tokenizer
    from specdraft.stages.train import check_prompts_fit, prompt_completion

    train = write_records(tmp_path / "train.jsonl", long_line=0)
    numbered = list(iter_jsonl(train))
    examples = [prompt_completion(r["prompt"], r["completion"], enable_thinking=False) for _, r in numbered]
    cfg = load_config({"train_target": {"max_length": 20}}).train_target  # every prompt has ~28 tokens
    with caplog.at_level("WARNING", logger="specdraft.stages.train"):
        check_prompts_fit(train, numbered, examples, load_tokenizer(base), base, cfg)
    assert f"{train}: 4 of 4 prompts have max_length 20 tokens or more" in caplog.text
    assert "line 1 (id gsm8k/train/1)" in caplog.text


def test_bench_rejects_a_prompt_longer_than_the_context(tmp_path, base):
    from specdraft.stages.bench import bench

    test = write_records(tmp_path / "test.jsonl", long_line=4)
    out = tmp_path / "benchmark.csv"
    with pytest.raises(PromptTooLong, match=r"test.jsonl: 1 of 4 prompts .* id gsm8k/train/4: [\d,]+ tokens"):
        bench(base, base, test, str(out), load_config({"bench": {"max_new_tokens": 32}}).bench,
              target_adapter=None, draft_adapter=None, engine="auto", dtype="float32", device="cpu", seed=0,
              gpu=GPU, enable_thinking=False, engine_weights="model_dtype")
    assert not out.exists()


def test_max_new_tokens_beyond_the_context_is_named(tmp_path, base):
    from specdraft.stages.distill import distill

    train = write_records(tmp_path / "train.jsonl", long_line=0)
    with pytest.raises(PromptTooLong, match=r"no prompt can fit \(the model's context of 128 less distill"):
        distill(base, base, train, str(tmp_path / "d.jsonl"), load_config({}).distill, engine="auto",
                dtype="float32", device="cpu", seed=0, gpu=GPU, enable_thinking=False, engine_weights="model_dtype")
