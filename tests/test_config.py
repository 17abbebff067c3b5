import pytest
import yaml

from specdraft.config import ConfigError, load_config


def test_defaults_fill_every_field():
    config = load_config({})
    assert config.styles == ("cot", "cod") and config.scenarios == ("easy", "medium", "hard")
    assert config.models.target == "Qwen/Qwen2.5-14B-Instruct"
    assert config.train_draft.lora.target_modules[0] == "q_proj"


def test_overrides_merge_with_nested_defaults():
    config = load_config({"train_target": {"lora": {"r": 4}}, "bench": {"num_speculative_tokens": [2]}})
    assert config.train_target.lora.r == 4 and config.train_target.lora.alpha == 32
    assert config.train_draft.lora.r == 16
    assert config.bench.num_speculative_tokens == (2,)


@pytest.mark.parametrize("bad, key, allowed", [
    ({"styles": ["cox"]}, "styles.0", "['cot', 'cod']"),
    ({"scenarios": ["extreme"]}, "scenarios.0", "['easy', 'medium', 'hard']"),
    ({"models": {"source": "s3"}}, "models.source", "['hub', 'tiny', 'random']"),
    ({"data": {"math": {"kind": "ftp", "path": "x"}}}, "data.math.kind", "['hub', 'local']"),
    ({"stylez": ["cot"]}, "<top level>", "'styles'"),
    ({"bench": {"k": [2]}}, "bench", "'num_speculative_tokens'"),
])
def test_rejects_unknown_keys_and_values_naming_key_and_allowed(bad, key, allowed):
    with pytest.raises(ConfigError) as error:
        load_config(bad)
    assert f"at {key}:" in str(error.value) and allowed in str(error.value)


def test_rejects_out_of_range_numbers():
    with pytest.raises(ConfigError, match="bench.num_speculative_tokens.0: 0 is less than the minimum of 1"):
        load_config({"bench": {"num_speculative_tokens": [0]}})


def test_shipped_configs_are_valid(repo):
    seed = yaml.safe_load((repo / "config.yaml").read_text())
    demo = yaml.safe_load((repo / "demo" / "config.yaml").read_text())
    assert load_config(seed).models.source == "hub"
    merged = {**seed, **demo}  # Snakemake merges --configfile over config.yaml key by key at the top
    assert load_config(merged).models.source == "tiny"
