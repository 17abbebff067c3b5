"""Typed configuration, validated against `config.schema.yaml` (the one source of defaults)."""

from __future__ import annotations

import dataclasses
import math
import typing
from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")


@dataclass(frozen=True)
class LoraConfig:
    r: int
    alpha: float
    dropout: float
    target_modules: tuple[str, ...]


@dataclass(frozen=True)
class TrainingConfig:
    epochs: float
    learning_rate: float
    batch_size: int
    gradient_accumulation_steps: int
    max_length: int
    gradient_checkpointing: bool
    lora: LoraConfig
    quantization: str
    liger_kernels: bool
    padding_free: bool
    save_steps: int
    mem_mb: int
    num_gpus: int


@dataclass(frozen=True)
class SourceConfig:
    kind: str
    path: str
    name: str | None
    revision: str | None


@dataclass(frozen=True)
class ModelShape:
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    vocab_multiple: int


@dataclass(frozen=True)
class TinyConfig:
    vocab_size: int
    max_position_embeddings: int
    target: ModelShape
    draft: ModelShape
    pretrain_steps: int
    pretrain_batch_size: int
    pretrain_learning_rate: float


@dataclass(frozen=True)
class ModelsConfig:
    source: str
    target: str
    draft: str
    dtype: str
    device: str
    random_overrides: dict[str, int]


@dataclass(frozen=True)
class DataConfig:
    gsm8k: SourceConfig
    math: SourceConfig
    num_train: int
    num_test: int
    cod_rewriter: str
    teacher: str | None
    rewrite_fallback: str
    rewrite_max_new_tokens: int
    rewrite_batch_size: int
    max_loss_share: float
    rewrites: str | None
    test_sets: str | None


@dataclass(frozen=True)
class BaselineConfig:
    enabled: bool
    style: str


@dataclass(frozen=True)
class DistillConfig:
    max_new_tokens: int
    batch_size: int
    temperature: float
    top_p: float
    keep_only_correct: bool


@dataclass(frozen=True)
class BenchConfig:
    num_problems: int
    num_speculative_tokens: tuple[int, ...]
    max_new_tokens: int
    temperature: float
    top_p: float
    concurrency: int
    repeats: int


@dataclass(frozen=True)
class ChatConfig:
    enable_thinking: bool


@dataclass(frozen=True)
class GpuConfig:
    memory_gib: float | None
    memory_utilization: float
    devices: list[int | str] | None
    lock_dir: str
    wait_seconds: float | None


@dataclass(frozen=True)
class PrimaryComparison:
    statistic: str
    k: int


@dataclass(frozen=True)
class SummaryConfig:
    bootstrap_resamples: int
    primary: PrimaryComparison


@dataclass(frozen=True)
class Config:
    styles: tuple[str, ...]
    scenarios: tuple[str, ...]
    seed: int
    seeds: tuple[int, ...]
    chat: ChatConfig
    baseline: BaselineConfig
    models: ModelsConfig
    engine: str
    engine_weights: str
    gpu: GpuConfig
    tiny: TinyConfig
    data: DataConfig
    train_target: TrainingConfig
    train_draft: TrainingConfig
    distill: DistillConfig
    bench: BenchConfig
    summary: SummaryConfig


class ConfigError(ValueError):
    """A configuration value the schema rejects; the message names the key and what is allowed."""


def validate(config: dict[str, Any]) -> dict[str, Any]:
    """Validate `config` against the schema and return a `canonical` copy with every default filled in.

    The jsonschema FAQ's default-filling validator, as snakemake's `validate` uses, with an error naming the key."""
    import jsonschema
    import yaml

    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    validator_class = jsonschema.Draft202012Validator
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, subschema):
        if isinstance(instance, dict):
            for name, prop in properties.items():
                if "default" in prop:
                    instance.setdefault(name, deepcopy(prop["default"]))
        yield from validate_properties(validator, properties, instance, subschema)

    filling = jsonschema.validators.extend(validator_class, {"properties": set_defaults})
    filled = _coerce_numbers(deepcopy(config), schema, schema)
    error = jsonschema.exceptions.best_match(filling(schema).iter_errors(filled))
    if error is not None:
        raise ConfigError(_describe(error)) from None
    return canonical(filled)


def canonical(value: Any) -> Any:
    """`value` with every mapping's keys sorted: Snakemake compares params by `repr`, so key order would rerun jobs."""
    if isinstance(value, dict):
        return {key: canonical(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [canonical(item) for item in value]
    return value


def _coerce_numbers(instance: Any, schema: dict, root: dict) -> Any:
    """`instance` with every string the schema types as a number replaced by it (YAML 1.1 reads `1e-3` as a string)."""
    if "$ref" in schema:
        schema = root["$defs"][schema["$ref"].removeprefix("#/$defs/")]
    if isinstance(instance, dict):
        properties = schema.get("properties", {})
        return {key: _coerce_numbers(value, properties[key], root) if key in properties else value
                for key, value in instance.items()}
    if isinstance(instance, list) and isinstance(schema.get("items"), dict):
        return [_coerce_numbers(value, schema["items"], root) for value in instance]
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else types
    if isinstance(instance, str) and ("number" in types or "integer" in types):
        try:
            number = float(instance.strip())
        except ValueError:
            return instance
        if not math.isfinite(number):
            return instance
        if "integer" in types and number.is_integer():
            return int(number)
        if "number" in types:
            return number
    return instance


def _describe(error) -> str:
    key = ".".join(str(p) for p in error.absolute_path) or "<top level>"
    message = error.message
    if error.validator == "enum":
        message = f"{error.instance!r} is not allowed; allowed values: {error.validator_value}"
    elif error.validator == "type" and error.validator_value in ("number", "integer"):
        article = "an" if error.validator_value == "integer" else "a"
        message = f"{error.instance!r} is not {article} {error.validator_value}"
        if error.validator_value == "number":
            message += " (write a decimal number, e.g. 0.001; 1e-3 is also read as one)"
    elif error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        message = f"unknown key(s) {unknown}; allowed keys: {allowed}"
    return f"invalid config at {key}: {message}"


def load_config(config: dict[str, Any]) -> Config:
    """The typed `Config` of a raw configuration dictionary (e.g. Snakemake's `config`), validated."""
    return _build(Config, validate(config))


def _build(cls: type, values: dict[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for field in dataclasses.fields(cls):
        value, hint = values[field.name], hints[field.name]
        if dataclasses.is_dataclass(hint):
            value = _build(hint, value)
        elif typing.get_origin(hint) is tuple:
            value = tuple(value)
        kwargs[field.name] = value
    return cls(**kwargs)
