"""The merge stage: the merged checkpoint loads with plain AutoModelForCausalLM and computes the adapter model."""

import json

import pytest
import torch

from specdraft.stages.merge import merge_adapter
from specdraft.stages.base_models import train_tokenizer
from tests.tiny_models import tiny_qwen2


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(["48/2=24; 48+24=72 #### 72", "Natalia sold 48/2 = 24 clips in May."] * 20, 300)


def adapter_on(model, path, seed: int):
    """A LoRA adapter with random (nonzero) B, saved to `path`: the merge must carry it."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                                                  init_lora_weights=False))
    peft_model.save_pretrained(path)
    return peft_model


@pytest.mark.parametrize("role", ["target", "draft"])
def test_merged_checkpoint_gives_the_adapter_models_logits(tmp_path, tokenizer, role):
    from transformers import AutoModelForCausalLM

    vocab = len(tokenizer)
    tiny_qwen2(0, vocab_size=vocab).save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    target_rows = vocab + 20  # the draft is merged with the target's (larger) vocabulary
    tiny_qwen2(1, vocab_size=target_rows).save_pretrained(tmp_path / "target")
    peft_model = adapter_on(AutoModelForCausalLM.from_pretrained(tmp_path / "base"), tmp_path / "adapter", seed=3)
    tokenizer.save_pretrained(tmp_path / "adapter")

    merge_adapter(tmp_path / "base", tmp_path / "adapter", tmp_path / "merged", dtype="float32", device="cpu",
                  vocab_of=tmp_path / "target" if role == "draft" else None)
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    assert not list((tmp_path / "merged").glob("adapter_*"))  # a plain checkpoint, no PEFT files
    ids = torch.tensor([tokenizer("48+24=72 #### 72")["input_ids"]])
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "base").eval()
    with torch.no_grad():
        expected = peft_model.eval()(ids).logits
        got = merged(ids).logits
        assert not torch.allclose(plain(ids).logits, expected, atol=1e-3)  # the adapter changes the model
    torch.testing.assert_close(got[..., :vocab], expected, rtol=1e-4, atol=1e-5)
    assert got.shape[-1] == (target_rows if role == "draft" else vocab)
    assert torch.all(got[..., vocab:] == 0)
    assert json.loads((tmp_path / "merged" / "tokenizer.json").read_text())["model"] == \
        json.loads((tmp_path / "adapter" / "tokenizer.json").read_text())["model"]  # the same vocabulary and merges


def test_the_merge_check_passes_a_merge_and_catches_a_missing_one(tmp_path, tokenizer):
    from transformers import AutoModelForCausalLM

    from specdraft.stages.merge import check_merged

    tiny_qwen2(0, vocab_size=len(tokenizer)).save_pretrained(tmp_path / "base")
    adapter_on(AutoModelForCausalLM.from_pretrained(tmp_path / "base"), tmp_path / "adapter", seed=3)
    tokenizer.save_pretrained(tmp_path / "adapter")
    merge_adapter(tmp_path / "base", tmp_path / "adapter", tmp_path / "merged", dtype="float32", device="cpu")
    prompts = ["48+24=72 #### 72", "Natalia sold 48/2 = 24 clips"]
    check = check_merged(tmp_path / "base", tmp_path / "adapter", tmp_path / "merged", prompts, dtype="float32",
                         device="cpu")
    assert check.passed and check.adapter_effect > 100 * check.max_abs_diff
    assert "config.json" in check.files and "model.safetensors" in check.files

    # In bf16 against a float32 run of the same weights: the merge adds about the dtype's own noise.
    check = check_merged(tmp_path / "base", tmp_path / "adapter", tmp_path / "merged", prompts, dtype="bfloat16",
                         device="cpu", reference_dtype="float32")
    assert check.passed and 0 < check.adapter_vs_reference < check.adapter_effect
    # The base saved as if merged: the check sees the adapter's effect missing.
    AutoModelForCausalLM.from_pretrained(tmp_path / "base").save_pretrained(tmp_path / "unmerged")
    tokenizer.save_pretrained(tmp_path / "unmerged")
    assert not check_merged(tmp_path / "base", tmp_path / "adapter", tmp_path / "unmerged", prompts,
                            dtype="float32", device="cpu").passed
    assert not check_merged(tmp_path / "base", tmp_path / "adapter", tmp_path / "unmerged", prompts,
                            dtype="bfloat16", device="cpu", reference_dtype="float32").passed
    (tmp_path / "merged" / "adapter_config.json").write_text("{}")
    with pytest.raises(ValueError, match="adapter_config.json \\(an adapter file\\)"):
        check_merged(tmp_path / "base", tmp_path / "adapter", tmp_path / "merged", prompts, dtype="float32",
                     device="cpu")
