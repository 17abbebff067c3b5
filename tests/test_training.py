import json

import pytest
import torch

from specdraft.plumbing.config import load_config
from specdraft.models.loading import load_causal_lm, pad_vocab
from specdraft.data.prompts import prompt_messages
from specdraft.stages.base_models import build_model, train_tokenizer
from specdraft.stages.train import prompt_completion, sft_lora
from tests.tiny_models import tiny_qwen2

TEXTS = ["Natalia sold 48/2 = 24 clips in May. #### 72", "48/2=24; 48+24=72 #### 72",
         "Think step by step to answer the following question."] * 20


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(TEXTS, vocab_size=300)


def test_tiny_tokenizer_has_qwen_chat_format(tokenizer):
    text = tokenizer.apply_chat_template(prompt_messages("2+2?", "cod"), add_generation_prompt=True,
                                         tokenize=False)
    assert text.startswith("<|im_start|>system\nThink step by step, but only keep a minimum draft")
    assert text.endswith("<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n")
    assert tokenizer.eos_token == "<|im_end|>"
    ids = tokenizer("48+24=72 #### 72")["input_ids"]
    assert tokenizer.decode(ids) == "48+24=72 #### 72"


def test_lora_training_changes_the_adapter_and_leaves_the_base_untouched(tmp_path, tokenizer):
    shape = load_config({}).tiny.target
    model = build_model(shape, len(tokenizer), 256, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    examples = [prompt_completion(prompt_messages("What is 48+24?", "cod"), "48+24=72 #### 72", enable_thinking=False)] * 8
    cfg = load_config({"train_target": {"epochs": 2, "batch_size": 4, "gradient_accumulation_steps": 1,
                                        "learning_rate": 0.01, "max_length": 512,
                                        "lora": {"r": 4, "target_modules": ["q_proj", "v_proj"]}}}).train_target
    history = sft_lora(model, tokenizer, examples, cfg, tmp_path / "adapter", seed=0)
    losses = [h["loss"] for h in history if "loss" in h]
    assert losses[-1] < losses[0]
    from safetensors.torch import load_file
    adapter = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    lora_b = [v for k, v in adapter.items() if "lora_B" in k]
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b)  # LoRA B starts at zero: training moved it
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["r"] == 4
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    for name, value in base.state_dict().items():
        key = name.replace(".base_layer", "")
        if key in before:
            assert torch.equal(value, before[key]), name


def test_merged_adapter_changes_the_model_output(tmp_path, tokenizer):
    shape = load_config({}).tiny.draft
    model = build_model(shape, len(tokenizer), 256, seed=0)
    model.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    examples = [prompt_completion(prompt_messages("What is 48+24?", "cod"), "48+24=72 #### 72", enable_thinking=False)] * 8
    cfg = load_config({"train_draft": {"epochs": 1, "batch_size": 4, "gradient_accumulation_steps": 1,
                                       "learning_rate": 0.01, "max_length": 512}}).train_draft
    sft_lora(model, tokenizer, examples, cfg, tmp_path / "adapter", seed=0)
    ids = torch.tensor([tokenizer("48+24=72")["input_ids"]])
    plain = load_causal_lm(tmp_path / "base", dtype=torch.float32, device=torch.device("cpu"))
    tuned = load_causal_lm(tmp_path / "base", dtype=torch.float32, device=torch.device("cpu"),
                           adapter=tmp_path / "adapter")
    with torch.no_grad():
        assert not torch.allclose(plain(ids).logits, tuned(ids).logits)


def test_pad_vocab_keeps_existing_logits_and_adds_inert_rows():
    model = tiny_qwen2(0, vocab_size=90)
    ids = torch.randint(0, 90, (1, 6))
    with torch.no_grad():
        before = model(ids).logits
        pad_vocab(model, 97)
        after = model(ids).logits
    assert after.shape[-1] == 97 and model.config.vocab_size == 97
    torch.testing.assert_close(after[..., :90], before)
    assert torch.all(after[..., 90:] == 0)
    with pytest.raises(ValueError, match="cannot shrink"):
        pad_vocab(model, 50)


class StopAfter:
    """A trainer callback that kills training after `step` optimizer steps, as a killed job would stop."""

    def __init__(self, step: int):
        self.step = step

    def __getattr__(self, event):  # every other callback event: nothing to do
        return lambda *args, **kwargs: None

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt(f"killed after step {self.step}")


def test_killed_training_resumes_from_its_last_checkpoint(tmp_path, tokenizer, caplog):
    questions = [("What is 48+24?", "48+24=72 #### 72"), ("What is 9*8?", "9*8=72 #### 72"),
                 ("What is 5-3?", "5-3=2 #### 2"), ("What is 6/2?", "6/2=3 #### 3")]
    examples = [prompt_completion(prompt_messages(q, "cod"), a, enable_thinking=False) for q, a in questions] * 3
    cfg = load_config({"train_target": {"epochs": 2, "batch_size": 2, "gradient_accumulation_steps": 1,
                                        "learning_rate": 0.01, "max_length": 512, "save_steps": 2,
                                        "lora": {"r": 4, "dropout": 0.1, "target_modules": ["q_proj", "v_proj"]}}
                       }).train_target  # 12 steps, a checkpoint every 2

    def run(out: str, checkpoints: str | None, callbacks=()):
        model = build_model(load_config({}).tiny.target, len(tokenizer), 256, seed=0)
        return sft_lora(model, tokenizer, examples, cfg, tmp_path / out, seed=0, checkpoint_dir=checkpoints,
                        callbacks=callbacks)

    run("straight", None)
    with pytest.raises(KeyboardInterrupt):
        run("resumed", str(tmp_path / "checkpoints"), callbacks=(StopAfter(5),))
    assert not (tmp_path / "resumed").exists()
    assert [p.name for p in (tmp_path / "checkpoints").glob("checkpoint-*")] == ["checkpoint-4"]
    with caplog.at_level("INFO", logger="specdraft.stages.train"):
        run("resumed", str(tmp_path / "checkpoints"))
    assert "resuming from" in caplog.text and "(step 4)" in caplog.text
    assert not (tmp_path / "checkpoints").exists()  # cleaned after success
    stats = json.loads((tmp_path / "resumed" / "train_stats.json").read_text())
    assert stats["resumed_from_step"] == 4 and stats["num_steps"] == 12
    assert stats["run"]["num_tokens"] > 0 and stats["run"]["tokens_per_second"] > 0
    from safetensors.torch import load_file
    straight = load_file(tmp_path / "straight" / "adapter_model.safetensors")
    resumed = load_file(tmp_path / "resumed" / "adapter_model.safetensors")
    assert straight.keys() == resumed.keys()
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], rtol=1e-4, atol=1e-5)


def test_checkpoints_of_other_settings_are_discarded(tmp_path):
    from specdraft.stages.train import prepare_checkpoints

    (tmp_path / "ckpt" / "checkpoint-3").mkdir(parents=True)
    (tmp_path / "ckpt" / "checkpoint-3" / "trainer_state.json").write_text("{}")
    (tmp_path / "ckpt" / "checkpoint-5").mkdir()  # killed while saving: no trainer state
    assert prepare_checkpoints(tmp_path / "ckpt", {"a": 1}) is None  # no fingerprint: not ours, discarded
    (tmp_path / "ckpt" / "checkpoint-3").mkdir()
    (tmp_path / "ckpt" / "checkpoint-3" / "trainer_state.json").write_text("{}")
    (tmp_path / "ckpt" / "checkpoint-5").mkdir()
    assert prepare_checkpoints(tmp_path / "ckpt", {"a": 1}).endswith("checkpoint-3")
    assert prepare_checkpoints(tmp_path / "ckpt", {"a": 2}) is None
    assert not (tmp_path / "ckpt" / "checkpoint-3").exists()


def test_a_tokenizer_beside_a_model_config_tokenizes_as_it_was_saved(tmp_path):
    # transformers' AutoTokenizer, seeing a qwen2 config.json, loaded the demo's tokenizer as Qwen2Tokenizer
    # and split "48+24" into other tokens than the same tokenizer saved alone (an adapter's directory).
    from transformers import Qwen2Config

    from specdraft.models.loading import load_tokenizer
    from specdraft.stages.base_models import train_tokenizer

    texts = ["48+24=72 and 48/2=24 so the answer is 72", "Natalia sold clips to 48 of her friends"] * 50
    tokenizer = train_tokenizer(texts, 300)
    tokenizer.save_pretrained(tmp_path / "alone")
    tokenizer.save_pretrained(tmp_path / "beside_model")
    Qwen2Config(vocab_size=300).save_pretrained(tmp_path / "beside_model")
    expected = tokenizer("48+24=72 so")["input_ids"]
    assert load_tokenizer(tmp_path / "alone")("48+24=72 so")["input_ids"] == expected
    assert load_tokenizer(tmp_path / "beside_model")("48+24=72 so")["input_ids"] == expected
