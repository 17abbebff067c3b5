"""The prepare stage: one style's train/test records for one scenario."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable
from pathlib import Path

from specdraft.answers import extract_answer, is_equivalent
from specdraft.atomic import atomic_path
from specdraft.config import DataConfig
from specdraft.data.sources import SCENARIO_DATASET, SCENARIO_LEVELS, Problem, check_loss, load_problems
from specdraft.data.styles import cot_solution, style_solution
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


def make_record(problem: Problem, scenario: str, style: str, solution: str) -> dict:
    """A processed record: the problem, its reference answer, and its solution in `style` as chat messages."""
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


def rules_solution(problem: Problem, scenario: str, style: str) -> str | None:
    """The deterministic solution in `style`, or None when it does not reach the reference answer."""
    solution = style_solution(problem, SCENARIO_DATASET[scenario], style)
    return solution if is_equivalent(extract_answer(solution, scenario), problem.answer, scenario) else None


# Rewrites problems into solutions (None: rejected): the llm rewriter, bound to a loaded teacher.
Rewriter = Callable[[list[Problem], str], list[str | None]]


def llm_rewriter(teacher: str, data: DataConfig, *, engine: str, dtype: str, device: str, seed: int,
                 engine_weights: str = "bf16") -> Rewriter:
    """Load the teacher once; rewrite each problem's CoT solution into CoD with it."""
    from specdraft.data.rewrite import rewrite_messages, rewrite_solutions
    from specdraft.generation import chat_prompt_ids
    from specdraft.models import load_causal_lm, load_tokenizer, resolve_device, resolve_dtype
    from specdraft.serving import serve

    dev = resolve_device(device)
    tokenizer = load_tokenizer(teacher)
    model = load_causal_lm(teacher, dtype=resolve_dtype(dtype, dev), device=dev)

    def rewrite(problems: list[Problem], scenario: str) -> list[str | None]:
        dataset = SCENARIO_DATASET[scenario]
        items = [(p.problem, cot_solution(p, dataset), p.answer) for p in problems]
        longest = max(len(chat_prompt_ids(tokenizer, rewrite_messages(q, c))) for q, c, _ in items)
        served = serve(model, engine, max_seq_len=longest + data.rewrite_max_new_tokens,
                       max_batch_size=data.rewrite_batch_size, weights=engine_weights)
        return [r.solution for r in rewrite_solutions(
            served, tokenizer, items, scenario, max_new_tokens=data.rewrite_max_new_tokens,
            batch_size=data.rewrite_batch_size, seed=seed)]

    return rewrite


def prepare(style: str, scenario: str, data: DataConfig, seed: int, train_path: str | Path,
            test_path: str | Path, report_path: str | Path, rewriter: Rewriter | None = None) -> dict:
    """Write the style's train and test JSONL for the scenario, and a JSON report of what was kept.

    CoD solutions come from `rewriter` when given (the llm rewriter), else from the rules; with
    `data.rewrite_fallback: rules` a rejected rewrite is replaced by the rules rewrite (and counted).
    """
    check_style(style)
    report = {"style": style, "scenario": scenario,
              "rewriter": "llm" if style == "cod" and rewriter is not None else "rules"}
    for split, path in (("train", train_path), ("test", test_path)):
        problems = scenario_problems(scenario, split, data, seed)
        num_fallback = 0
        if style == "cod" and rewriter is not None:
            solutions = rewriter(problems, scenario)
            if data.rewrite_fallback == "rules":
                num_fallback = sum(s is None for s in solutions)
                solutions = [s if s is not None else rules_solution(p, scenario, style)
                             for p, s in zip(problems, solutions)]
        else:
            solutions = [rules_solution(p, scenario, style) for p in problems]
        kept = [make_record(p, scenario, style, s) for p, s in zip(problems, solutions) if s is not None]
        rejected = len(problems) - len(kept)
        if rejected:
            log.warning("%s/%s %s: %d of %d solutions rejected: their answer is not the reference",
                        style, scenario, split, rejected, len(problems))
        if not kept:
            raise ValueError(f"{style}/{scenario} {split}: all {len(problems)} solutions were rejected "
                             f"(rewriter: {report['rewriter']})")
        write_jsonl(path, kept)
        report[split] = {"sampled": len(problems), "kept": len(kept), "rejected": rejected}
        if report["rewriter"] == "llm":
            report[split]["rules_fallback"] = num_fallback
        log.info("%s/%s %s: %d records -> %s", style, scenario, split, len(kept), path)
    with atomic_path(report_path) as tmp:
        Path(tmp).write_text(json.dumps(report, indent=1) + "\n")
    return report
