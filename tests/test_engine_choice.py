"""Both engines decode the same way: no inherited checkpoint decoding defaults, and no model the native engine
would serve wrongly."""

import logging

import pytest
import torch

from specdraft.engine import Engine
from specdraft.models.engine_choice import serve
from specdraft.models.native_support import unsupported_features
from tests.tiny_models import tiny_qwen2


def tiny(config_class, model_class, **extra):
    torch.manual_seed(0)
    config = config_class(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                          num_key_value_heads=1, intermediate_size=32, max_position_embeddings=128, **extra)
    return model_class(config).eval()


def qwen2(**extra):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    return tiny(Qwen2Config, Qwen2ForCausalLM, **extra)


def llama(**extra):
    from transformers import LlamaConfig, LlamaForCausalLM

    return tiny(LlamaConfig, LlamaForCausalLM, **extra)


@pytest.mark.parametrize("build, feature", [
    (lambda: qwen2(rope_scaling={"rope_type": "linear", "factor": 2.0}), "RoPE scaling 'linear'"),
    (lambda: llama(attention_bias=True), "a bias on o_proj"),
    (lambda: llama(mlp_bias=True), "biases in the MLP"),
    (lambda: qwen2(use_sliding_window=True, sliding_window=32, max_window_layers=0), "sliding-window attention"),
])
def test_native_engine_refuses_what_it_does_not_implement_and_auto_falls_back(build, feature, caplog):
    model = build()
    assert feature in unsupported_features(model)
    with caplog.at_level(logging.WARNING, logger="specdraft.models.engine_choice"):
        assert serve(model, "auto", max_seq_len=64, weights="model_dtype") is model
    assert f"does not implement {feature}" in caplog.text and "serving with Hugging Face" in caplog.text
    with pytest.raises(ValueError, match=f"engine 'native' does not implement {feature}"):
        serve(model, "native", max_seq_len=64, weights="model_dtype")


def test_plain_qwen2_and_llama_are_served_natively():
    for model in (qwen2(), llama(), tiny_qwen2(0)):
        assert unsupported_features(model) == []
        assert isinstance(serve(model, "auto", max_seq_len=64, weights="model_dtype"), Engine)


def test_hf_generate_ignores_the_checkpoints_decoding_defaults(tmp_path, caplog):
    from transformers import AutoModelForCausalLM

    from specdraft.decoding.generation import generate_batched
    from specdraft.models.loading import load_causal_lm
    from specdraft.stages.base_models import train_tokenizer

    tokenizer = train_tokenizer(["What is 48+24? 48+24=72 #### 72", "Natalia sold 48/2 = 24 clips."] * 10, 300)
    model = tiny_qwen2(0, vocab_size=len(tokenizer))
    # As Qwen2.5-Instruct's generation_config.json does (with a penalty strong enough to change greedy output).
    model.generation_config.update(do_sample=True, repetition_penalty=2.0, temperature=0.7, top_k=20, top_p=0.8)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(tmp_path / "model")
    prompts = [[{"role": "user", "content": q}] for q in ("What is 48+24?", "Natalia sold 48/2 clips?")]

    def generate(model, engine):
        return generate_batched(serve(model, engine, max_seq_len=256, max_batch_size=2, weights="model_dtype"),
                                tokenizer, prompts, max_new_tokens=24, temperature=0.0, batch_size=2, seed=0, enable_thinking=False)

    with caplog.at_level(logging.INFO, logger="specdraft.models.loading"):
        loaded = load_causal_lm(tmp_path / "model", dtype=torch.float32, device=torch.device("cpu"))
    assert "'repetition_penalty': 2.0" in caplog.text
    assert loaded.generation_config.eos_token_id == tokenizer.eos_token_id
    native = generate(loaded, "native")
    assert generate(loaded, "hf") == native
    # The control: loaded as transformers loads it, HF generate applies the penalty and decodes differently.
    inherited = AutoModelForCausalLM.from_pretrained(tmp_path / "model", dtype=torch.float32).eval()
    assert generate(inherited, "hf") != native


SMALL = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
         "intermediate_size": 96}


@pytest.mark.parametrize("weights", ["model_dtype", "int8"])
def test_load_served_is_serve_of_the_loaded_model(tmp_path, weights):
    """What the stages load: an engine with the weights `serve` would build from the loaded model (the same
    random base and greedy output), a Hugging Face model for engine 'hf'."""
    from specdraft.decoding.speculative import autoregressive_generate
    from specdraft.models.engine_choice import load_served
    from specdraft.models.loading import load_causal_lm
    from specdraft.models.random_weights import write_random_checkpoint

    path = tmp_path / "base"
    write_random_checkpoint("Qwen2.5-0.5B-Instruct", 0, path, SMALL)
    common = dict(adapter=None, weights=weights, dtype="float32", device="cpu", max_seq_len=64)
    served = load_served(str(path), engine="native", **common)
    expected = serve(load_causal_lm(path, dtype=torch.float32, device=torch.device("cpu")), "native",
                     max_seq_len=64, weights=weights)
    assert isinstance(served, Engine) and served.decoder.weights == weights
    prompt = torch.tensor([[3, 14, 15, 92, 6]])
    assert torch.equal(autoregressive_generate(served, prompt, max_new_tokens=12),
                       autoregressive_generate(expected, prompt, max_new_tokens=12))
    hf = load_served(str(path), engine="hf", **common)
    assert not isinstance(hf, Engine) and next(hf.parameters()).device.type == "cpu"


def test_a_quantized_base_is_not_loaded_into_host_memory(tmp_path):
    from specdraft.models.loading import load_base_weights

    with pytest.raises(ValueError, match="host memory"):
        load_base_weights(tmp_path, dtype=torch.float32, device=torch.device("cpu"), quantization="4bit", on_host=True)
