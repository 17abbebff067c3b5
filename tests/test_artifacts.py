"""A corrupt or truncated artifact names its file, the rule that writes it, and the command that rebuilds it."""

import json

import pytest
import torch

from specdraft.plumbing.artifacts import ArtifactError, producing_rule
from specdraft.plumbing.jsonl import JsonlError, read_jsonl
from tests.tiny_models import tiny_qwen2


def test_every_output_maps_to_its_rule():
    assert producing_rule("results/cod_easy/target_adapter/adapter_model.safetensors") == "train_target"
    assert producing_rule("/run/results/cot_hard/seed1/draft_adapter") == "train_draft"
    assert producing_rule("results/cod_easy/checkpoints/target/checkpoint-2/optimizer.pt") == "train_target"
    assert producing_rule("results/cod_easy/distilled.jsonl") == "distill"
    assert producing_rule("results/untrained_easy/benchmark.csv") == "baseline"
    assert producing_rule("results/cod_easy/benchmark.csv") == "bench"
    assert producing_rule("data/processed/cod_easy/train.jsonl") == "prepare"
    assert producing_rule("data/raw/gsm8k/train.jsonl") is None


@pytest.fixture()
def base_and_adapter(tmp_path):
    from peft import LoraConfig, get_peft_model

    tiny_qwen2(0).save_pretrained(tmp_path / "base")
    adapter = tmp_path / "results" / "cod_easy" / "target_adapter"
    get_peft_model(tiny_qwen2(0), LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(adapter)
    return tmp_path / "base", adapter


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_damaged_adapter_names_its_path_and_rule(base_and_adapter, damage):
    from specdraft.models.loading import load_causal_lm

    base, adapter = base_and_adapter
    weights = adapter / "adapter_model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"\x00" * 64)
    with pytest.raises(ArtifactError) as error:
        load_causal_lm(base, dtype=torch.float32, device=torch.device("cpu"), adapter=adapter)
    message = str(error.value)
    assert str(weights) in message and "rule train_target" in message and "snakemake -R train_target" in message


def test_a_corrupt_checkpoint_names_its_file_and_rule(tmp_path):
    from specdraft.stages.train import prepare_checkpoints

    directory = tmp_path / "results" / "cod_easy" / "checkpoints" / "draft"
    fingerprint = {"seed": 0}
    prepare_checkpoints(directory, fingerprint)
    checkpoint = directory / "checkpoint-3"
    checkpoint.mkdir()
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": 3}))
    (checkpoint / "adapter_model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{")
    with pytest.raises(ArtifactError, match=r"checkpoint-3/adapter_model.safetensors.*snakemake -R train_draft"):
        prepare_checkpoints(directory, fingerprint)


def test_a_truncated_jsonl_line_names_file_line_and_rule(tmp_path):
    path = tmp_path / "results" / "cod_easy" / "distilled.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"prompt": "a", "completion": "b"}) + "\n" + '{"prompt": "a", "compl')
    with pytest.raises(JsonlError, match=r"distilled.jsonl:2: invalid JSON .*rule distill.*snakemake -R distill"):
        read_jsonl(path)
