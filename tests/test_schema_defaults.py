"""The schema is the one source of defaults: config.yaml, the seed experiment, may restate a default for the
reader, but differs from one only where the experiment overrides it on purpose."""

import yaml

# The seed experiment's own choices: its replicates, its data, and the draft's training recipe.
DELIBERATE = {"seeds", "data.rewrites", "data.test_sets", "data.num_train",
              "data.num_test", "train_draft.epochs", "train_draft.batch_size",
              "train_draft.gradient_accumulation_steps", "train_draft.lora.r", "train_draft.lora.alpha"}


def differences(schema: dict, config: dict, path: str = "") -> set[str]:
    def resolve(node):
        while "$ref" in node:
            node = schema["$defs"][node["$ref"].rsplit("/", 1)[1]] | {k: v for k, v in node.items() if k != "$ref"}
        return node

    def walk(node, values, prefix):
        found = set()
        properties = resolve(node).get("properties", {})
        for key, value in values.items():
            sub = resolve(properties[key])
            whole = sub.get("default")  # a section with a default of its own (a data source) compares whole
            if isinstance(value, dict) and "properties" in sub and not whole and prefix + key not in DELIBERATE:
                found |= walk(sub, value, f"{prefix}{key}.")
            elif sub.get("default", object()) != value:
                found.add(prefix + key)
        return found

    return walk(schema, config, path)


def test_config_yaml_differs_from_the_schema_defaults_only_on_purpose(repo):
    schema = yaml.safe_load((repo / "specdraft/plumbing/config.schema.yaml").read_text())
    config = yaml.safe_load((repo / "config.yaml").read_text())
    assert differences(schema, config) == DELIBERATE


def test_a_drifted_default_is_found(repo):
    schema = yaml.safe_load((repo / "specdraft/plumbing/config.schema.yaml").read_text())
    config = yaml.safe_load((repo / "config.yaml").read_text())
    config["bench"]["num_speculative_tokens"] = [2, 4, 6]
    assert differences(schema, config) == DELIBERATE | {"bench.num_speculative_tokens"}


def test_the_schema_spells_the_weight_formats_as_the_engine_does(repo):
    from specdraft.plumbing.names import MODEL_DTYPE, WEIGHT_FORMATS

    weights = yaml.safe_load((repo / "specdraft/plumbing/config.schema.yaml").read_text())["properties"][
        "engine_weights"]
    assert (weights["enum"], weights["default"]) == (list(WEIGHT_FORMATS), MODEL_DTYPE)
