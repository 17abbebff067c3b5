"""The prepare stage: one style's train/test records for one scenario."""

from __future__ import annotations

import logging
import random
from pathlib import Path

from specdraft.answers import extract_answer, is_equivalent
from specdraft.config import DataConfig
from specdraft.data.sources import SCENARIO_DATASET, SCENARIO_LEVELS, Problem, check_loss, load_problems
from specdraft.data.styles import style_solution
from specdraft.jsonl import write_jsonl
from specdraft.prompts import chat_messages, check_style

log = logging.getLogger(__name__)


def scenario_problems(scenario: str, split: str, data: DataConfig, seed: int) -> list[Problem]:
    """The seeded sample of `split` problems for `scenario`; the same for every style."""
    dataset = SCENARIO_DATASET[scenario]
    source = data.gsm8k if dataset == "gsm8k" else data.math
    problems, rejected = load_problems(dataset, split, source)
    for r in rejected:
        log.warning("rejected %s", r)
    check_loss(rejected, len(problems), data.max_loss_share, f"{dataset} {split}")
    levels = SCENARIO_LEVELS[scenario]
    if levels is not None:
        problems = [p for p in problems if p.level in levels]
    size = data.num_train if split == "train" else data.num_test
    # A string seed is hashed deterministically by `random`, so the sample is reproducible across runs.
    rng = random.Random(f"{seed}/{scenario}/{split}")
    return rng.sample(problems, min(size, len(problems)))


def make_record(problem: Problem, scenario: str, style: str) -> dict | None:
    """A processed record, or None when the styled solution does not reach the reference answer."""
    dataset = SCENARIO_DATASET[scenario]
    solution = style_solution(problem, dataset, style)
    if not is_equivalent(extract_answer(solution, scenario), problem.answer, scenario):
        return None
    return {
        "id": problem.id,
        "scenario": scenario,
        "style": style,
        "level": problem.level,
        "subject": problem.subject,
        "problem": problem.problem,
        "answer": problem.answer,
        "solution": solution,
        "messages": chat_messages(problem.problem, style, solution),
    }


def prepare(style: str, scenario: str, data: DataConfig, seed: int, train_path: str | Path,
            test_path: str | Path) -> dict[str, int]:
    """Write the style's train and test JSONL for the scenario; return record counts per split."""
    check_style(style)
    counts = {}
    for split, path in (("train", train_path), ("test", test_path)):
        problems = scenario_problems(scenario, split, data, seed)
        records = [make_record(p, scenario, style) for p in problems]
        kept = [r for r in records if r is not None]
        if len(kept) < len(records):
            log.warning("%s/%s %s: %d records whose %s solution misses the reference answer were dropped",
                        style, scenario, split, len(records) - len(kept), style)
        if not kept:
            raise ValueError(f"{style}/{scenario} {split}: no usable records")
        counts[split] = write_jsonl(path, kept)
        log.info("%s/%s %s: %d records -> %s", style, scenario, split, counts[split], path)
    return counts
