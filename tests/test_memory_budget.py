"""The GPU memory budget: its arithmetic against the engine's own tensors at the shipped shapes, and stages that
refuse a budget they cannot fit before any model is loaded."""

import json

import pytest
import torch

from specdraft.plumbing.config import load_config
from specdraft.plumbing.memory_budget import (GIB, Architecture, MemoryBudgetError, engine_weight_bytes, fit_rows,
                                     kv_bytes_per_token, serving_need, training_need)
from specdraft.models.random_weights import shipped_config, write_random_checkpoint

TARGET, DRAFT = "Qwen/Qwen2.5-14B-Instruct", "Qwen/Qwen2.5-0.5B-Instruct"


def arch(name, vocab_size=None):
    return Architecture.from_config(shipped_config(name), vocab_size=vocab_size)


def engine_on_meta(name, weights):
    """The engine's decoder of a shipped architecture on the meta device, in bf16 (no memory used)."""
    from transformers import AutoConfig

    from specdraft.engine.decoder import Decoder, DecoderShape

    config = AutoConfig.for_model(**shipped_config(name))
    shape = DecoderShape.from_hf_config(config, attention_bias=True)
    with torch.device("meta"):
        return Decoder(shape, weights).to(torch.bfloat16), shape


@pytest.mark.parametrize("weights", ["model_dtype", "int8", "int4"])
@pytest.mark.parametrize("name", [TARGET, DRAFT])
def test_weight_bytes_equal_the_engines_tensors(name, weights):
    decoder, _ = engine_on_meta(name, weights)
    stored = [t for n, t in [*decoder.named_parameters(), *decoder.named_buffers()] if n != "inv_freq"]
    assert engine_weight_bytes(arch(name), weights, 2) == sum(t.numel() * t.element_size() for t in stored)


def test_known_sizes_of_the_seed_pair():
    # The 14B is 14.77e9 parameters (29.5 GB in bf16); int8 keeps the bf16 embedding table.
    assert engine_weight_bytes(arch(TARGET), "model_dtype", 2) / 1e9 == pytest.approx(29.54, abs=0.01)
    assert engine_weight_bytes(arch(TARGET), "int8", 2) / GIB == pytest.approx(14.48, abs=0.01)
    # Keys and values: 2 x 48 layers x 8 heads x 128 x 2 bytes = 192 KiB a position; the 0.5B: 12 KiB.
    assert kv_bytes_per_token(arch(TARGET), 2) == 192 * 1024
    assert kv_bytes_per_token(arch(DRAFT), 2) == 12 * 1024


def test_kv_bytes_equal_the_engines_cache():
    from specdraft.engine.decoder import KVCache

    for name in (TARGET, DRAFT):
        _, shape = engine_on_meta(name, "model_dtype")
        cache = KVCache(shape, batch_size=3, max_seq_len=256, dtype=torch.bfloat16, device=torch.device("meta"))
        held = sum(t.numel() * t.element_size() for t in [*cache.k, *cache.v])
        assert held == kv_bytes_per_token(arch(name), 2) * 3 * 256


def test_training_lower_bound_is_below_the_measured_peaks():
    # Peak allocated GiB measured on the H200 at 4 x 1024 (target) / 8 x 1024 (draft) tokens, LoRA on all
    # linear layers (docs/rehearsal/train_mfu_h200.json): the bound stays under each, and within 80% of the
    # checkpointed runs' (what it leaves out is one layer's recomputation and the loss).
    modules = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    cases = [(TARGET, None, "none", 16, 4, True, 32.17), (TARGET, None, "4bit", 16, 4, True, 13.03),
             (TARGET, None, "none", 16, 4, False, 80.93), (DRAFT, 152064, "none", 32, 8, True, 2.51)]
    for name, vocab, quantization, r, batch, checkpointing, measured in cases:
        need = training_need(arch(name, vocab), quantization=quantization, lora_r=r, target_modules=modules,
                             batch_size=batch, max_length=1024, gradient_checkpointing=checkpointing, dtype_bytes=2)
        assert need.lower_bound and need.gib <= measured
        if checkpointing and name == TARGET:
            assert need.gib >= 0.8 * measured


def test_budget_sizes_distill_and_bench():
    # configs/24gb.yaml: the int8 14B distils at batch >= 8 and the int8 pair benchmarks at concurrency >= 4.
    target = (arch(TARGET), "int8")
    draft = (arch(DRAFT, 152064), "int8")
    rows, need = fit_rows("distill", [target], budget_gib=21.5, max_rows=32, max_seq_len=1280, prompt_len=512,
                          dtype_bytes=2, keys=(), utilization=0.9)
    assert 8 <= rows < 32 and need.gib <= 21.5
    assert serving_need([target], rows=rows + 1, max_seq_len=1280, prompt_len=512, dtype_bytes=2).gib > 21.5
    rows, _ = fit_rows("bench", [target, draft], budget_gib=21.5, max_rows=16, max_seq_len=1024, prompt_len=512,
                       dtype_bytes=2, keys=(), utilization=0.9)
    assert rows >= 4
    assert fit_rows("x", [target], budget_gib=None, max_rows=32, max_seq_len=1280, prompt_len=512, dtype_bytes=2,
                    keys=(), utilization=0.9)[0] == 32


def test_a_pair_that_cannot_fit_says_what_it_needs_and_where_it_fits():
    pair = [(arch(TARGET), "model_dtype"), (arch(DRAFT, 152064), "model_dtype")]
    with pytest.raises(MemoryBudgetError) as error:
        fit_rows("bench", pair, budget_gib=21.5, max_rows=1, max_seq_len=768, prompt_len=256, dtype_bytes=2,
                 keys=("engine_weights (int8, int4)",), utilization=0.9)
    message = str(error.value)
    need = serving_need(pair, rows=1, max_seq_len=768, prompt_len=256, dtype_bytes=2).gib
    assert f"{need:.1f} GiB" in message and "gpu.memory_gib 21.5" in message
    assert "engine_weights (int8, int4)" in message and "40 GB (A100 40GB)" in message


def random_checkpoints(root):
    for role, name in (("target", TARGET), ("draft", DRAFT)):
        write_random_checkpoint(name, 0, root / role)  # config and tokenizer only: no weights
    line = {"id": "gsm8k-1", "scenario": "easy", "answer": "72",
            "messages": [{"role": "user", "content": "What is 48 + 24?"}, {"role": "assistant", "content": "72"}]}
    (root / "records.jsonl").write_text(json.dumps(line) + "\n")


def refuse_loading(*args, **kwargs):
    raise AssertionError("the model was loaded although the budget cannot hold it")


def test_stages_refuse_a_small_budget_before_loading(tmp_path, monkeypatch):
    import specdraft.stages.bench
    import specdraft.stages.distill
    import specdraft.stages.train

    for module, name in ((specdraft.stages.distill, "load_served"), (specdraft.stages.bench, "load_served"),
                         (specdraft.stages.train, "load_base_weights")):
        monkeypatch.setattr(module, name, refuse_loading)
    random_checkpoints(tmp_path)
    cfg = load_config({"engine_weights": "int8", "gpu": {"memory_gib": 8}})
    common = dict(dtype="bfloat16", device="cpu", seed=0, gpu=cfg.gpu, enable_thinking=False)
    target, draft, records = str(tmp_path / "target"), str(tmp_path / "draft"), str(tmp_path / "records.jsonl")
    with pytest.raises(MemoryBudgetError, match=r"distill needs \d+\.\d GiB .*gpu.memory_gib 8.*distill.batch_size"):
        specdraft.stages.distill.distill(target, target, records, str(tmp_path / "d.jsonl"), cfg.distill, engine="auto",
                                  engine_weights="int8", **common)
    with pytest.raises(MemoryBudgetError, match=r"bench needs \d+\.\d GiB .*bench.concurrency.*24 GB"):
        specdraft.stages.bench.bench(target, draft, records, str(tmp_path / "b.csv"), cfg.bench, target_adapter=None,
                              draft_adapter=None, engine="auto", engine_weights="int8", **common)
    with pytest.raises(MemoryBudgetError, match=r"train_target needs at least \d+\.\d GiB .*quantization: 4bit"):
        specdraft.stages.train.train_target(target, records, str(tmp_path / "adapter"), cfg.train_target, **common)
    assert not (tmp_path / "d.jsonl").exists() and not (tmp_path / "b.csv").exists()


def test_the_schema_defaults_to_a_share_of_the_card():
    gpu = load_config({}).gpu
    assert (gpu.memory_gib, gpu.memory_utilization) == (None, 0.9)
