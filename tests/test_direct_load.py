"""A random base served straight from per-tensor draws: the same engine weights as the host path, no model."""

import json
import weakref

import pytest
import torch

from specdraft.models.direct_load import lora_updates, serve_random
from specdraft.engine.decoder import Decoder
from specdraft.models.loading import load_causal_lm
from specdraft.models.random_weights import RandomWeights, write_random_checkpoint

CPU = torch.device("cpu")
# Every matrix's input size a multiple of 128, so int4 builds too.
SMALL = {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
         "intermediate_size": 256}


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    """(root, target vocabulary): an untied 14B-shaped and a tied 0.5B-shaped random base, each with a LoRA
    adapter whose B is not zero (so the merge changes the weights)."""
    from peft import LoraConfig, get_peft_model

    root = tmp_path_factory.mktemp("direct")
    for name in ("Qwen2.5-14B-Instruct", "Qwen2.5-0.5B-Instruct"):
        write_random_checkpoint(name, 3, root / name, SMALL)
        model = load_causal_lm(root / name, dtype=torch.float32, device=CPU)
        config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                               "up_proj", "down_proj"], init_lora_weights=False)
        torch.manual_seed(0)
        get_peft_model(model, config).save_pretrained(root / f"{name}-adapter")
    target_vocab = json.loads((root / "Qwen2.5-14B-Instruct" / "config.json").read_text())["vocab_size"]
    return root, target_vocab


def host_path_decoder(base, adapter, dtype, weights, vocab_size):
    model = load_causal_lm(base, dtype=dtype, device=CPU, adapter=adapter, vocab_size=vocab_size)
    return Decoder.from_hf(model, weights=weights)


@pytest.mark.parametrize("weights", ["model_dtype", "int8", "int4"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", ["Qwen2.5-14B-Instruct", "Qwen2.5-0.5B-Instruct"])
def test_direct_engine_weights_equal_the_host_paths_bit_for_bit(bases, name, dtype, weights):
    root, target_vocab = bases
    adapter = root / f"{name}-adapter"
    engine = serve_random(str(root / name), adapter=str(adapter), weights=weights, dtype=dtype, device=CPU,
                          max_seq_len=64, max_batch_size=1, vocab_size=target_vocab)
    assert engine is not None
    direct = engine.decoder.state_dict()
    reference = host_path_decoder(root / name, adapter, dtype, weights, target_vocab).state_dict()
    assert direct.keys() == reference.keys()
    assert engine.decoder.shape.vocab_size == target_vocab
    for key in reference:
        assert direct[key].dtype == reference[key].dtype, key
        assert torch.equal(direct[key], reference[key]), key
    unmerged = host_path_decoder(root / name, None, dtype, weights, target_vocab).state_dict()
    assert not torch.equal(direct["layers.0.o.weight"], unmerged["layers.0.o.weight"])  # the merge happened


def test_direct_path_builds_no_model_and_holds_one_matrix_at_a_time(bases, monkeypatch):
    import specdraft.models.loading
    import specdraft.models.random_weights
    from specdraft.models.engine_choice import load_served

    root, target_vocab = bases

    def refuse(*args, **kwargs):
        raise AssertionError("the direct path built a Hugging Face model")

    monkeypatch.setattr(specdraft.models.random_weights, "build_random_model", refuse)
    monkeypatch.setattr(specdraft.models.loading, "load_causal_lm", refuse)
    alive, most = [], [0]
    draw = RandomWeights.__getitem__

    def counting(self, name):
        most[0] = max(most[0], sum(ref() is not None for ref in alive))  # drawn tensors still held by anyone
        tensor = draw(self, name)
        alive.append(weakref.ref(tensor))
        return tensor

    monkeypatch.setattr(RandomWeights, "__getitem__", counting)
    engine = load_served(str(root / "Qwen2.5-14B-Instruct"), adapter=str(root / "Qwen2.5-14B-Instruct-adapter"),
                         engine="native", weights="int8", dtype="float32", device="cpu", max_seq_len=64)
    assert type(engine).__name__ == "Engine"
    assert len(alive) == len(RandomWeights(root / "Qwen2.5-14B-Instruct", dtype=torch.float32, device=CPU))
    assert most[0] <= 2  # q and k while v is drawn (or gate while up is): never the model
    assert all(ref() is None for ref in alive)  # the engine keeps copies, not the draws


def test_adapters_the_merge_does_not_cover_take_the_host_path(bases, tmp_path):
    root, _ = bases
    adapter = tmp_path / "dora"
    adapter.mkdir()
    source = root / "Qwen2.5-0.5B-Instruct-adapter"
    (adapter / "adapter_model.safetensors").write_bytes((source / "adapter_model.safetensors").read_bytes())
    config = json.loads((source / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
    assert "use_dora" in lora_updates(adapter, CPU)
    assert serve_random(str(root / "Qwen2.5-0.5B-Instruct"), adapter=str(adapter), weights="model_dtype",
                        dtype=torch.float32, device=CPU, max_seq_len=64, max_batch_size=1, vocab_size=None) is None
