import pytest
import yaml

from specdraft.plumbing.config import ConfigError, load_config, validate


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


def test_numbers_written_with_an_exponent_are_numbers():
    # YAML 1.1 (PyYAML, Snakemake) reads 1e-3 as the string '1e-3'; where the schema says number, it is one.
    raw = yaml.safe_load("train_target: {learning_rate: 1e-3, batch_size: 1e1}\nbench: {top_p: '0.9'}")
    assert raw["train_target"]["learning_rate"] == "1e-3"
    config = load_config(raw)
    assert config.train_target.learning_rate == 0.001 and config.train_target.batch_size == 10
    assert config.bench.top_p == 0.9


@pytest.mark.parametrize("bad, message", [
    ({"train_target": {"learning_rate": "fast"}}, "train_target.learning_rate: 'fast' is not a number (write"),
    ({"train_target": {"batch_size": "2.5"}}, "train_target.batch_size: '2.5' is not an integer"),
    ({"models": {"target": 1e-3}}, "models.target: 0.001 is not of type 'string'"),
])
def test_non_numbers_still_fail_naming_the_key(bad, message):
    with pytest.raises(ConfigError) as error:
        load_config(bad)
    assert message in str(error.value)


def test_key_order_does_not_change_the_validated_config():
    # Snakemake compares params by repr: a dict's repr follows its key order.
    config = {"seed": 3, "bench": {"top_p": 0.9, "max_new_tokens": 64},
              "data": {"num_test": 5, "gsm8k": {"path": "x", "kind": "local"}, "num_train": 9}}

    def reversed_keys(value):
        return {k: reversed_keys(value[k]) for k in reversed(list(value))} if isinstance(value, dict) else value

    assert repr(reversed_keys(config)) != repr(config)
    assert repr(validate(reversed_keys(config))) == repr(validate(config))


@pytest.mark.parametrize("overrides", [None, "configs/qwen3.yaml", "configs/24gb.yaml"])
def test_the_real_configs_caps_cover_the_p99_of_their_training_answers(repo, overrides):
    """bench and distill cut an answer at max_new_tokens: the real configurations leave room for the p99
    answer of every style and scenario they train on, and its eos (docs/data_stats_seed.csv, written by the
    stats stage on the seed's rewrites, the data config.yaml trains on)."""
    import csv

    import yaml
    from snakemake.utils import update_config

    config = yaml.safe_load((repo / "config.yaml").read_text())
    if overrides:
        update_config(config, yaml.safe_load((repo / overrides).read_text()))
    cfg = load_config(config)
    assert cfg.data.rewrites == "data/seed-rewrites"  # the data the table describes
    rows = [r for r in csv.DictReader(open(repo / "docs/data_stats_seed.csv"))
            if r["split"] == "train" and r["style"] in cfg.styles and r["scenario"] in cfg.scenarios]
    assert len(rows) == len(cfg.styles) * len(cfg.scenarios)
    longest = max(float(r["tokens_p99"]) for r in rows)
    assert cfg.bench.max_new_tokens >= longest + 1 and cfg.distill.max_new_tokens >= longest + 1
