"""models.source: random — the shipped architectures, scaled down, drawn the same way in every process."""

import importlib.util

import pytest
import torch

from specdraft.models.loading import load_base_weights, load_causal_lm, load_tokenizer, vocab_size_of
from specdraft.models.random_weights import build_random_model, shipped_architectures, write_random_checkpoint

CPU = torch.device("cpu")
SMALL = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
         "intermediate_size": 96}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("random")
    for name, seed in (("Qwen/Qwen2.5-14B-Instruct", 0), ("Qwen2.5-0.5B-Instruct", 0),
                       ("Qwen/Qwen2.5-14B-Instruct", 1)):
        write_random_checkpoint(name, seed, root / f"{name.rsplit('/', 1)[-1]}-{seed}", SMALL)
    return root


def test_shipped_shapes_are_the_qwen25_models():
    from transformers import AutoConfig

    from specdraft.models.random_weights import MODEL_CONFIGS

    assert shipped_architectures() == ["Qwen2.5-0.5B-Instruct", "Qwen2.5-14B-Instruct"]
    target = AutoConfig.from_pretrained(MODEL_CONFIGS / "Qwen2.5-14B-Instruct")
    draft = AutoConfig.from_pretrained(MODEL_CONFIGS / "Qwen2.5-0.5B-Instruct")
    assert (target.hidden_size, target.num_hidden_layers, target.num_attention_heads, target.num_key_value_heads,
            target.intermediate_size, target.vocab_size, target.tie_word_embeddings) == \
        (5120, 48, 40, 8, 13824, 152064, False)
    assert (draft.hidden_size, draft.num_hidden_layers, draft.num_attention_heads, draft.num_key_value_heads,
            draft.intermediate_size, draft.vocab_size, draft.tie_word_embeddings) == \
        (896, 24, 14, 2, 4864, 151936, True)
    assert target.rope_parameters["rope_theta"] == draft.rope_parameters["rope_theta"] == 1e6
    with torch.device("meta"):
        from transformers import AutoModelForCausalLM

        num_params = sum(p.numel() for p in AutoModelForCausalLM.from_config(target).parameters())
    assert 14.7e9 < num_params < 14.8e9


def test_same_seed_same_weights_and_a_real_tokenizer(checkpoints):
    path = checkpoints / "Qwen2.5-14B-Instruct-0"
    first = build_random_model(path, dtype=torch.float32, device=CPU)
    second = load_causal_lm(path, dtype=torch.float32, device=CPU)  # the stages' loader, another draw
    other = build_random_model(checkpoints / "Qwen2.5-14B-Instruct-1", dtype=torch.float32, device=CPU)
    a, b, c = first.state_dict(), second.state_dict(), other.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["model.layers.0.mlp.up_proj.weight"], c["model.layers.0.mlp.up_proj.weight"])
    assert first.config.hidden_size == 64 and first.config.vocab_size == 152064 == vocab_size_of(path)
    assert torch.all(a["model.layers.0.self_attn.q_proj.bias"] == 0) and torch.all(a["model.norm.weight"] == 1)
    assert abs(a["model.layers.1.self_attn.o_proj.weight"].std().item() - 0.02) < 0.002
    tokenizer = load_tokenizer(path)
    assert len(tokenizer) == 151665 and tokenizer("Hello, world!")["input_ids"] == [9707, 11, 1879, 0]
    assert tokenizer.eos_token == "<|im_end|>"


def test_random_model_computes_what_hugging_face_builds_from_its_weights(checkpoints):
    from transformers import AutoConfig, AutoModelForCausalLM

    path = checkpoints / "Qwen2.5-0.5B-Instruct-0"
    model = build_random_model(path, dtype=torch.float32, device=CPU).eval()
    assert model.lm_head.weight is model.model.embed_tokens.weight  # tied, as Qwen2.5-0.5B
    reference = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path), dtype=torch.float32).eval()
    reference.load_state_dict(model.state_dict())
    ids = torch.randint(0, 151665, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, reference(ids).logits)  # rotary buffers, ties, norms


def test_unknown_architecture_and_override_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"no shipped architecture 'Qwen/Qwen3-14B'.*Qwen2.5-14B-Instruct"):
        write_random_checkpoint("Qwen/Qwen3-14B", 0, tmp_path / "x")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['vocab_size'\]"):
        write_random_checkpoint("Qwen2.5-0.5B-Instruct", 0, tmp_path / "x", {"vocab_size": 10})
    assert not (tmp_path / "x").exists()


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is not None, reason="bitsandbytes is installed")
def test_4bit_without_bitsandbytes_says_how_to_install(checkpoints):
    with pytest.raises(ImportError, match=r"pip install 'specdraft\[qlora\]'"):
        load_base_weights(checkpoints / "Qwen2.5-0.5B-Instruct-0", dtype=torch.bfloat16, device=CPU,
                          quantization="4bit")


def test_4bit_random_base_is_the_quantised_bf16_base_and_trains(checkpoints, tmp_path):
    pytest.importorskip("bitsandbytes")
    import bitsandbytes as bnb

    from specdraft.plumbing.config import load_config
    from specdraft.data.prompts import prompt_messages
    from specdraft.stages.train import prompt_completion, sft_lora

    path = checkpoints / "Qwen2.5-0.5B-Instruct-0"
    full = build_random_model(path, dtype=torch.float32, device=CPU).eval()
    quantized = load_base_weights(path, dtype=torch.float32, device=CPU, quantization="4bit").eval()
    layer = quantized.model.layers[0].mlp.up_proj
    assert isinstance(layer, bnb.nn.Linear4bit) and quantized.is_loaded_in_4bit
    assert not isinstance(quantized.lm_head, bnb.nn.Linear4bit)
    dequantized = bnb.functional.dequantize_4bit(layer.weight.data, layer.weight.quant_state)
    error = (dequantized - full.model.layers[0].mlp.up_proj.weight).abs().max().item()
    assert error < 0.2 * full.model.layers[0].mlp.up_proj.weight.abs().max().item()  # NF4 of the same weights
    cfg = load_config({"train_target": {"quantization": "4bit", "epochs": 1, "batch_size": 2,
                                        "gradient_accumulation_steps": 1, "max_length": 128,
                                        "lora": {"r": 4, "target_modules": ["q_proj", "up_proj"]}}}).train_target
    examples = [prompt_completion(prompt_messages("What is 48+24?", "cod"), "48+24=72 #### 72", enable_thinking=False)] * 4
    sft_lora(quantized.train(), load_tokenizer(path), examples, cfg, tmp_path / "adapter", seed=0)
    stats = __import__("json").loads((tmp_path / "adapter" / "train_stats.json").read_text())
    assert stats["quantization"] == "4bit" and stats["num_steps"] == 2
    from safetensors.torch import load_file

    adapter = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    assert any("mlp.up_proj.lora_A" in key for key in adapter)  # LoRA wrapped the NF4 layers
