"""Exact offline acceptance for greedy speculative decoding: one teacher-forced pass instead of a run per k.

A proposed token is checked only once those before it equal the target's greedy output y, so the draft's
teacher-forced agreement with y fixes every step's acceptance (the derivation: docs/analysis.md).
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from specdraft.plumbing.atomic import atomic_path
from specdraft.plumbing.config import BenchConfig
from specdraft.decoding.metrics import SpecStats
from specdraft.decoding.generation import chat_prompt_ids
from specdraft.plumbing.jsonl import read_jsonl, write_jsonl
from specdraft.models.engine_choice import load_served
from specdraft.models.loading import load_tokenizer, vocab_size_of
from specdraft.decoding.sessions import open_session
from specdraft.analysis.token_classes import classify_tokens, token_texts

log = logging.getLogger(__name__)


def replay_greedy(agrees: Sequence[bool], *, num_new_tokens: int, num_speculative_tokens: int,
                  max_new_tokens: int) -> tuple[SpecStats, list[bool]]:
    """The stats `speculative_generate` reports, and per output position whether an accepted draft token filled it.

    agrees[i]: the draft's teacher-forced argmax at output position i is the target's token, given up to
    position min(num_new_tokens - 1 + k, max_new_tokens - 1), past eos included.
    """
    k_max = num_speculative_tokens
    if k_max < 1:
        raise ValueError(f"num_speculative_tokens must be >= 1, got {k_max}")
    if not 1 <= num_new_tokens <= max_new_tokens:
        raise ValueError(f"num_new_tokens must be in [1, max_new_tokens={max_new_tokens}], got {num_new_tokens}")
    needed = min(num_new_tokens - 1 + k_max, max_new_tokens - 1)
    if len(agrees) < needed:
        raise ValueError(f"agreement over {len(agrees)} positions; the replay needs {needed} "
                         f"(num_new_tokens {num_new_tokens} - 1 + k {k_max}, at most max_new_tokens - 1)")
    stats, accepted = SpecStats(), [False] * num_new_tokens
    n = 0
    # speculative_generate stops after the step whose new tokens reach eos or max_new_tokens.
    while n < num_new_tokens:
        k = min(k_max, max_new_tokens - n - 1)  # speculative_generate never proposes past max_new_tokens
        num_accepted = 0
        while num_accepted < k and agrees[n + num_accepted]:
            num_accepted += 1
        stats.observe(k, num_accepted)  # before the stop check: accepted tokens past eos count (vLLM)
        for i in range(n, min(n + num_accepted, num_new_tokens)):
            accepted[i] = True
        n += num_accepted + 1
    return stats, accepted


@dataclass(frozen=True)
class TargetOutput:
    """The target's greedy answer to one prompt, continued past eos for the replay."""

    id: str
    prompt_ids: list[int]
    output_ids: list[int]  # greedy tokens: the answer (eos included), then its greedy continuation past eos
    num_new_tokens: int  # the answer's length: through the first eos, or max_new_tokens


@torch.inference_mode()
def greedy_extended(target, prompt_ids: list[int], *, max_new_tokens: int, eos_token_id: int | None,
                    extra: int) -> tuple[list[int], int]:
    """(output_ids, num_new_tokens): the target's greedy output, continued `extra` tokens past the first eos
    because a draft may keep being accepted past it."""
    session = open_session(target, len(prompt_ids) + max_new_tokens)
    seq, output, num_new_tokens = list(prompt_ids), [], None
    while len(output) < max_new_tokens and (num_new_tokens is None or len(output) < num_new_tokens + extra):
        token = int(session.forward(seq[session.length:], 1)[0].argmax())
        seq.append(token)
        output.append(token)
        if num_new_tokens is None and token == eos_token_id:
            num_new_tokens = len(output)
    return output, num_new_tokens if num_new_tokens is not None else len(output)


@torch.inference_mode()
def teacher_forced_argmax(model, prompt_ids: list[int], output_ids: list[int]) -> list[int]:
    """The model's greedy prediction at every output position given the true prefix: one forward."""
    session = open_session(model, len(prompt_ids) + len(output_ids))
    logits = session.forward(prompt_ids + output_ids[:-1], len(output_ids))  # [len(output_ids), V]
    return logits.argmax(dim=-1).tolist()


def draft_agreement(draft, output: TargetOutput) -> list[bool]:
    """agrees[i]: the draft's teacher-forced argmax at output position i is the target's token."""
    predicted = teacher_forced_argmax(draft, output.prompt_ids, output.output_ids)
    return [p == t for p, t in zip(predicted, output.output_ids)]


@dataclass(frozen=True)
class PredictionRow:
    """benchmark.csv's counts for one problem and k, predicted offline (same fields, same definitions)."""

    id: str
    k: int
    num_new_tokens: int
    num_proposed: int
    num_accepted: int
    num_steps: int
    acceptance_rate: float
    mean_acceptance_length: float
    accepted_per_position: str


def prediction_row(id_: str, k: int, num_new_tokens: int, stats: SpecStats) -> PredictionRow:
    return PredictionRow(
        id=id_, k=k, num_new_tokens=num_new_tokens, num_proposed=stats.num_proposed,
        num_accepted=stats.num_accepted, num_steps=stats.num_steps, acceptance_rate=stats.acceptance_rate,
        mean_acceptance_length=stats.mean_acceptance_length,
        accepted_per_position=";".join(map(str, stats.num_accepted_per_position)))


POSITION_FIELDS = ["id", "position", "token_id", "token", "token_class", "after_end", "target_agrees",
                   "draft_agrees"]


def analyse(target, draft, tokenizer, records: list[dict], cfg: BenchConfig, *, enable_thinking: bool
            ) -> tuple[list[TargetOutput], list[dict], list[PredictionRow]]:
    """(outputs, position rows, prediction rows): each prompt's greedy output, both models' agreement with it,
    and the replay for every k up to the largest configured."""
    ks = cfg.num_speculative_tokens
    outputs, positions, predictions = [], [], []
    for record in records:
        prompt_ids = chat_prompt_ids(tokenizer, record["messages"][:-1], enable_thinking=enable_thinking)
        output_ids, num_new = greedy_extended(target, prompt_ids, max_new_tokens=cfg.max_new_tokens,
                                              eos_token_id=tokenizer.eos_token_id, extra=max(ks))
        output = TargetOutput(record["id"], prompt_ids, output_ids, num_new)
        outputs.append(output)
        target_predicted = teacher_forced_argmax(target, prompt_ids, output_ids)
        agrees = draft_agreement(draft, output)
        accepted_by_k = {}
        for k in range(1, max(ks) + 1):
            stats, accepted_by_k[k] = replay_greedy(agrees, num_new_tokens=num_new, num_speculative_tokens=k,
                                                    max_new_tokens=cfg.max_new_tokens)
            predictions.append(prediction_row(record["id"], k, num_new, stats))
        classes = classify_tokens(tokenizer, output_ids[:num_new])
        texts = token_texts(tokenizer, output_ids)
        for i, token in enumerate(output_ids):
            in_answer = i < num_new
            positions.append({
                "id": record["id"], "position": i, "token_id": token, "token": json.dumps(texts[i])[1:-1],
                "token_class": classes[i] if in_answer else "", "after_end": not in_answer,
                "target_agrees": target_predicted[i] == token, "draft_agrees": agrees[i],
                **{f"accepted_k{k}": in_answer and accepted_by_k[k][i] for k in ks},
            })
        consistent = sum(p == t for p, t in zip(target_predicted, output_ids))
        log.info("%s: %d tokens, draft agrees at %d, target's teacher-forced argmax agrees at %d of %d",
                 record["id"], num_new, sum(agrees[:num_new]), consistent, len(output_ids))
    return outputs, positions, predictions


def write_csv(path: str, rows: list[dict], fields: list[str]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def write_predictions(path: str, rows: list[PredictionRow]) -> None:
    write_csv(path, [asdict(r) for r in rows], list(PredictionRow.__dataclass_fields__))


def write_outputs(path: str, outputs: list[TargetOutput]) -> None:
    write_jsonl(path, (asdict(o) for o in outputs))


def read_outputs(path: str) -> list[TargetOutput]:
    fields = list(TargetOutput.__dataclass_fields__)
    return [TargetOutput(**{f: r[f] for f in fields}) for r in read_jsonl(path, required=fields)]


def acceptance(target_base: str, draft_base: str, test_path: str, cfg: BenchConfig, *, outputs_path: str,
               positions_path: str, predictions_path: str, target_adapter: str | None, draft_adapter: str | None,
               engine: str, dtype: str, device: str, enable_thinking: bool, engine_weights: str) -> None:
    """The acceptance stage: greedy outputs, per-position agreement and the predicted counts for every k."""
    if cfg.temperature > 0:
        log.warning("bench.temperature is %s: this stage predicts greedy decoding's acceptance, which the "
                    "sampled benchmark does not measure", cfg.temperature)
    records = read_jsonl(test_path, required=("id", "scenario", "messages", "answer"))[: cfg.num_problems]
    tokenizer = load_tokenizer(target_base)
    max_seq_len = max(len(chat_prompt_ids(tokenizer, r["messages"][:-1], enable_thinking=enable_thinking))
                      for r in records) + cfg.max_new_tokens
    served = {"engine": engine, "weights": engine_weights, "dtype": dtype, "device": device,
              "max_seq_len": max_seq_len}
    target = load_served(target_base, adapter=target_adapter, **served)
    draft = load_served(draft_base, adapter=draft_adapter, vocab_size=vocab_size_of(target_base), **served)
    outputs, positions, predictions = analyse(target, draft, tokenizer, records, cfg, enable_thinking=enable_thinking)
    write_outputs(outputs_path, outputs)
    write_csv(positions_path, positions,
              POSITION_FIELDS + [f"accepted_k{k}" for k in cfg.num_speculative_tokens])
    write_predictions(predictions_path, predictions)
    log.info("%d problems, %d positions -> %s; predictions -> %s", len(outputs), len(positions), positions_path,
             predictions_path)


COMPARED_FIELDS = ("num_new_tokens", "num_proposed", "num_accepted", "num_steps", "accepted_per_position")
CHECK_COLUMNS = [
    "experiment", "seed", "k", "decoding", "num_problems", "num_matching", "predicted_acceptance_rate",
    "measured_acceptance_rate", "predicted_mean_acceptance_length", "measured_mean_acceptance_length",
]


def _read_counts(path: str):
    import pandas as pd

    return pd.read_csv(path, dtype={"id": str, "accepted_per_position": str}, keep_default_na=False)


def _pooled(group, suffix: str = "") -> tuple[float, float]:
    """(acceptance rate, mean acceptance length) pooled over a group of rows' counts."""
    accepted, proposed, steps = (group[f"num_{count}{suffix}"].sum() for count in ("accepted", "proposed", "steps"))
    return accepted / max(1, proposed), 1 + accepted / max(1, steps)


def check_predictions(pairs: dict[tuple[str, int], tuple[str, str]], temperature: float):
    """Predicted against measured counts per experiment, seed and k, from `{(experiment, seed): (prediction, bench)}`.

    num_matching: benchmark rows whose COMPARED_FIELDS all equal the prediction's for the same problem and k."""
    import pandas as pd

    rows = []
    for (experiment, seed), (prediction_path, benchmark_path) in pairs.items():
        predicted, measured = _read_counts(prediction_path), _read_counts(benchmark_path)
        joined = measured.merge(predicted, on=["id", "k"], how="left", suffixes=("", "_predicted"),
                                indicator=True)
        missing = joined[joined._merge != "both"]
        if not missing.empty:
            first = missing.iloc[0]
            raise ValueError(f"{prediction_path} has no prediction for problem {first.id!r}, k={first.k} of "
                             f"{benchmark_path}: rerun the acceptance stage with the bench's configuration")
        same = pd.Series(True, index=joined.index)
        for field in COMPARED_FIELDS:
            same &= joined[field] == joined[f"{field}_predicted"]
        joined["matching"] = same
        for k, group in joined.groupby("k"):
            predicted_rate, predicted_length = _pooled(group, "_predicted")
            measured_rate, measured_length = _pooled(group)
            rows.append({
                "experiment": experiment, "seed": int(seed), "k": int(k), "decoding": "greedy" if temperature == 0 else "sampled",
                "num_problems": len(group), "num_matching": int(group.matching.sum()),
                "predicted_acceptance_rate": predicted_rate, "measured_acceptance_rate": measured_rate,
                "predicted_mean_acceptance_length": predicted_length,
                "measured_mean_acceptance_length": measured_length,
            })
    return pd.DataFrame(rows, columns=CHECK_COLUMNS)


def write_check(pairs: dict[tuple[str, int], tuple[str, str]], temperature: float, out_path: str) -> None:
    """The acceptance check stage: results/acceptance_check.csv."""
    table = check_predictions(pairs, temperature)
    with atomic_path(out_path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")
    log.info("%d of %d benchmark rows predicted exactly -> %s", table.num_matching.sum(), table.num_problems.sum(),
             out_path)
