"""How much GPU memory a stage needs, from the models' config.json alone, and what fits in a budget.

Pure arithmetic, no torch, so a stage checks its budget before it loads a model; training's is a lower bound.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from specdraft.plumbing.names import INT4_GROUP as GROUP, WEIGHT_FORMATS

log = logging.getLogger(__name__)

GIB = 2**30
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)  # bitsandbytes NF4, double-quantized absmax per 64 weights
ADAPTER_BYTES = 4 + 4 + 8  # a float32 LoRA weight, its gradient and Adam's two moments
# Nominal card sizes (GiB) and examples, for "the smallest card it fits".
CARDS = ((16, "16 GB (T4, V100 16GB)"), (24, "24 GB (RTX 3090/4090, A10)"), (40, "40 GB (A100 40GB)"),
         (48, "48 GB (A40, L40S, RTX 6000 Ada)"), (80, "80 GB (A100 80GB, H100)"), (141, "141 GB (H200)"))


@dataclass(frozen=True)
class Architecture:
    """The shape fields of a Qwen2 / Qwen3 / Llama config.json that memory depends on."""

    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    tied_embeddings: bool

    @classmethod
    def from_config(cls, config: dict, vocab_size: int | None = None) -> Architecture:
        """`config`: a config.json's contents; vocab_size: the rows it is padded to (a draft: the target's)."""
        heads = config["num_attention_heads"]
        return cls(vocab_size=vocab_size or config["vocab_size"], hidden_size=config["hidden_size"],
                   num_layers=config["num_hidden_layers"], num_heads=heads,
                   num_kv_heads=config.get("num_key_value_heads") or heads,
                   head_dim=config.get("head_dim") or config["hidden_size"] // heads,
                   intermediate_size=config["intermediate_size"],
                   tied_embeddings=bool(config.get("tie_word_embeddings", False)))

    def projections(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of a layer's Hugging Face linear layers, by module name."""
        h, q, kv, i = self.hidden_size, self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim, \
            self.intermediate_size
        return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    def layer_matrices(self) -> list[tuple[int, int]]:
        """[N, K] of a layer's engine matrices: fused qkv, o, fused gate_up, down."""
        h, i = self.hidden_size, self.intermediate_size
        return [((self.num_heads + 2 * self.num_kv_heads) * self.head_dim, h), (h, self.num_heads * self.head_dim),
                (2 * i, h), (h, i)]


def matrix_bytes(n: int, k: int, weights: str, dtype_bytes: int) -> float:
    """Bytes of an [N, K] matrix in the engine's weight format."""
    if weights == "model_dtype":
        return n * k * dtype_bytes
    if weights == "int8":
        return n * k + n * dtype_bytes
    if weights == "int4":
        return n * k / 2 + n * (k // GROUP) * dtype_bytes
    raise ValueError(f"engine weights must be one of {list(WEIGHT_FORMATS)}, got {weights!r}")


def engine_weight_bytes(arch: Architecture, weights: str, dtype_bytes: int) -> float:
    """The engine's copy of a model: embedding table (model dtype), lm-head and layer matrices (in `weights`),
    norms and q/k/v biases (model dtype). The engine keeps a separate lm-head even for tied embeddings."""
    h = arch.hidden_size
    layer = sum(matrix_bytes(n, k, weights, dtype_bytes) for n, k in arch.layer_matrices())
    layer += (2 * h + (arch.num_heads + 2 * arch.num_kv_heads) * arch.head_dim) * dtype_bytes
    return arch.vocab_size * h * dtype_bytes + matrix_bytes(arch.vocab_size, h, weights, dtype_bytes) + \
        arch.num_layers * layer + h * dtype_bytes


def kv_bytes_per_token(arch: Architecture, dtype_bytes: int) -> int:
    return 2 * arch.num_layers * arch.num_kv_heads * arch.head_dim * dtype_bytes


def activation_elements_per_token(arch: Architecture) -> int:
    """Elements a layer's step holds per token at once, residual sums included."""
    qkv = (arch.num_heads + 2 * arch.num_kv_heads) * arch.head_dim
    return 4 * arch.hidden_size + 2 * qkv + 3 * arch.intermediate_size


@dataclass(frozen=True)
class Need:
    """Bytes a stage needs, by part; `lower_bound` when parts of its peak are not modelled."""

    parts: dict[str, float]
    lower_bound: bool = False

    @property
    def gib(self) -> float:
        return sum(self.parts.values()) / GIB

    def describe(self) -> str:
        parts = " + ".join(f"{name} {size / GIB:.1f}" for name, size in self.parts.items())
        return f"{'at least ' if self.lower_bound else ''}{self.gib:.1f} GiB ({parts})"


def serving_need(models: list[tuple[Architecture, str]], *, rows: int, max_seq_len: int, prompt_len: int,
                 dtype_bytes: int) -> Need:
    """The engine's need for `models` ((architecture, weight format) each) serving `rows` rows prefilled at once."""
    weights = sum(engine_weight_bytes(arch, fmt, dtype_bytes) for arch, fmt in models)
    cache = sum(kv_bytes_per_token(arch, dtype_bytes) for arch, _ in models) * rows * max_seq_len
    workspace = 0.0
    for arch, fmt in models:  # one model runs at a time: the larger workspace
        group = arch.num_heads // arch.num_kv_heads
        prefill = rows * prompt_len * activation_elements_per_token(arch) * dtype_bytes
        mask = rows * prompt_len * group * max_seq_len * (dtype_bytes + 1)  # additive mask and its boolean
        logits = rows * arch.vocab_size * 4 * 4  # float32 logits, probabilities and top-p's sort
        largest = max(n * k for n, k in [(arch.vocab_size, arch.hidden_size), *arch.layer_matrices()]) * dtype_bytes
        dequantized = 0 if fmt == "model_dtype" else largest
        # While an engine is built from per-tensor draws, one matrix in the model's dtype exists beside it.
        workspace = max(workspace, prefill + mask + logits + dequantized, largest)
    return Need({"weights": weights, f"KV cache ({rows} x {max_seq_len} positions)": cache,
                 "workspace": workspace})


def training_need(arch: Architecture, *, quantization: str, lora_r: int, target_modules: tuple[str, ...],
                  batch_size: int, max_length: int, gradient_checkpointing: bool, dtype_bytes: int) -> Need:
    """A lower bound of LoRA training's peak: weights, adapter state and the activations kept for the backward."""
    h, v = arch.hidden_size, arch.vocab_size
    projections = arch.projections()
    linear = sum(i * o for i, o in projections.values())
    per_linear = NF4_BYTES if quantization == "4bit" else dtype_bytes
    embeddings = v * h * (1 if arch.tied_embeddings else 2) * dtype_bytes
    weights = arch.num_layers * (linear * per_linear + 2 * h * dtype_bytes) + embeddings
    adapter = arch.num_layers * sum(lora_r * sum(projections[m]) for m in target_modules if m in projections)
    tokens = batch_size * max_length
    kept = h if gradient_checkpointing else activation_elements_per_token(arch)
    return Need({"weights": weights, "adapter state": adapter * ADAPTER_BYTES,
                 "kept activations": arch.num_layers * tokens * kept * dtype_bytes}, lower_bound=True)


def smallest_card(need_gib: float, utilization: float) -> str:
    """The smallest card of CARDS whose default budget (`utilization` of it) holds `need_gib`."""
    for gib, name in CARDS:
        if gib * utilization >= need_gib:
            return f"{name}, gpu.memory_gib up to {gib * utilization:.1f}"
    return f"none of {CARDS[-1][1]} or smaller"


class MemoryBudgetError(ValueError):
    """A stage that cannot fit `gpu.memory_gib`: says what it needs, which keys lower it, and which card fits."""


def refuse(stage: str, need: Need, budget_gib: float, keys: tuple[str, ...], utilization: float):
    """The error a stage raises before loading anything when `need` exceeds `budget_gib`."""
    return MemoryBudgetError(
        f"{stage} needs {need.describe()} of GPU memory, more than gpu.memory_gib {budget_gib:g}; lower it with "
        f"{', '.join(keys)}, or run it on a larger card (the smallest that fits: "
        f"{smallest_card(need.gib, utilization)})")


def check_fits(stage: str, need: Need, budget_gib: float | None, keys: tuple[str, ...], utilization: float) -> None:
    if budget_gib is not None and need.gib > budget_gib:
        raise refuse(stage, need, budget_gib, keys, utilization)
    if budget_gib is not None:
        log.info("%s: needs %s of gpu.memory_gib %g", stage, need.describe(), budget_gib)


def fit_rows(stage: str, models: list[tuple[Architecture, str]], *, budget_gib: float | None, max_rows: int,
             max_seq_len: int, prompt_len: int, dtype_bytes: int, keys: tuple[str, ...], utilization: float
             ) -> tuple[int, Need]:
    """The most rows (<= max_rows) that fit `budget_gib`, and the need at that many; fails when one does not fit."""
    def need(rows: int) -> Need:
        return serving_need(models, rows=rows, max_seq_len=max_seq_len, prompt_len=prompt_len,
                            dtype_bytes=dtype_bytes)

    if budget_gib is None:
        return max_rows, need(max_rows)
    rows = max_rows
    while rows > 1 and need(rows).gib > budget_gib:
        rows -= 1
    check_fits(stage, need(rows), budget_gib, keys, utilization)
    if rows < max_rows:
        log.warning("%s: %d rows at once instead of %d, to fit gpu.memory_gib %g", stage, rows, max_rows, budget_gib)
    return rows, need(rows)
