"""The prepare stage: both styles' train/test records for one scenario, always on the same problems.

Every input is checked before a teacher model loads; `report.json` counts every dropped row and problem by reason.
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from specdraft.plumbing.atomic import atomic_path
from specdraft.plumbing.config import DataConfig
from specdraft.data.rewrites import Rewrites, check_rewrites_dir, load_rewrites, rewrite_path
from specdraft.data.sources import (
    SCENARIO_DATASET,
    SCENARIO_LEVELS,
    Problem,
    check_loss,
    count_reasons,
    load_file,
    load_problems,
    problem_key,
)
from specdraft.data.styles import NoDraft, cod_solution, cot_solution, solution_rejection
from specdraft.plumbing.jsonl import write_jsonl
from specdraft.data.prompts import chat_messages
from specdraft.plumbing.names import SCENARIOS, STYLES

log = logging.getLogger(__name__)

# Rewrites problems into CoD solutions (None: rejected): the llm rewriter, bound to a teacher.
Rewriter = Callable[[list[Problem], str], list[str | None]]


@dataclass(frozen=True)
class StylePaths:
    train: str | Path
    test: str | Path
    report: str | Path


def make_record(problem: Problem, scenario: str, style: str, solution: str | None) -> dict:
    """A processed record: the problem, its reference answer and its solution in `style` (null: none) as chat."""
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


def rules_cod(problem: Problem, scenario: str) -> tuple[str | None, str | None]:
    """(the rules' Chain of Draft, None) when its last step yields the reference, else (None, why not)."""
    try:
        solution = cod_solution(problem, SCENARIO_DATASET[scenario])
    except NoDraft as e:
        return None, e.reason
    reason = solution_rejection(solution, problem.answer, scenario, last_step_yields=True)
    return (solution, None) if reason is None else (None, reason)


def llm_rewriter(teacher: str, data: DataConfig, *, engine: str, dtype: str, device: str, seed: int,
                 enable_thinking: bool, engine_weights: str) -> Rewriter:
    """Rewrite each problem's CoT solution into CoD with `teacher`, loaded on the first call."""
    loaded = {}

    def rewrite(problems: list[Problem], scenario: str) -> list[str | None]:
        from specdraft.data.rewrite import rewrite_messages, rewrite_solutions
        from specdraft.decoding.generation import chat_prompt_ids
        from specdraft.models.loading import load_causal_lm, load_tokenizer, resolve_device, resolve_dtype
        from specdraft.models.engine_choice import serve

        dev = resolve_device(device)
        if not loaded:
            loaded["tokenizer"] = load_tokenizer(teacher)
            # On the host when the engine serves it, so the GPU never holds the teacher twice.
            loaded["model"] = load_causal_lm(teacher, dtype=resolve_dtype(dtype, dev), device=dev,
                                             on_host=engine != "hf" and dev.type == "cuda")
        tokenizer = loaded["tokenizer"]
        dataset = SCENARIO_DATASET[scenario]
        items = [(p.problem, cot_solution(p, dataset), p.answer) for p in problems]
        longest = max(len(chat_prompt_ids(tokenizer, rewrite_messages(q, c), enable_thinking=enable_thinking))
                      for q, c, _ in items)
        served = serve(loaded["model"], engine, max_seq_len=longest + data.rewrite_max_new_tokens,
                       max_batch_size=data.rewrite_batch_size, weights=engine_weights, device=dev)
        if served is loaded["model"]:  # served by Hugging Face: the model itself goes to the device
            served = loaded["model"] = served.to(dev)
        return [r.solution for r in rewrite_solutions(
            served, tokenizer, items, scenario, max_new_tokens=data.rewrite_max_new_tokens,
            batch_size=data.rewrite_batch_size, seed=seed, enable_thinking=enable_thinking)]

    return rewrite


def prepare(scenario: str, data: DataConfig, seed: int, outputs: Mapping[str, StylePaths],
            rewriter: Rewriter | None = None) -> dict:
    """Write each style's train and test JSONL for `scenario` (`outputs`: {style: paths}) and a JSON report.

    CoD comes from `rewriter` when given, else from the rules; `data.rewrites` supplies training solutions."""
    for style in outputs:
        if style not in STYLES:
            raise ValueError(f"style must be one of {list(STYLES)}, got {style!r}")
    dataset = SCENARIO_DATASET[scenario]
    source = data.gsm8k if dataset == "gsm8k" else data.math
    levels = SCENARIO_LEVELS[scenario]
    report: dict = {"scenario": scenario, "inputs": {}}

    def read(label: str, loaded) -> list[Problem]:
        problems, rejected = loaded
        for r in rejected:
            log.warning("rejected %s", r)
        check_loss(rejected, len(problems), data.max_loss_share, label)
        report["inputs"][label] = {"rows": len(problems) + len(rejected), "rejected": count_reasons(rejected)}
        return problems

    where = f"{source.path}/{{}}.jsonl" if source.kind == "local" else f"{source.path} [{{}}]"
    train_rows = read(where.format("train"), load_problems(dataset, "train", source))
    source_test = None
    if data.test_sets is None or data.rewrites is not None:
        source_test = read(where.format("test"), load_problems(dataset, "test", source))
    if data.test_sets is None:
        test_rows, test_sets = source_test, [source_test]
    else:
        test_sets = []
        for other in SCENARIOS:
            path = Path(data.test_sets) / f"{other}_test.jsonl"
            if SCENARIO_DATASET[other] == dataset and (other == scenario or path.is_file()):
                problems = read(str(path), load_file(dataset, path, f"{other}_test", "data.test_sets"))
                test_sets.append(problems)
                if other == scenario:
                    test_rows = problems
    # Every problem of every test set drawn from this dataset, whatever its level or scenario.
    test_keys = {problem_key(p.problem) for problems in test_sets for p in problems}

    rewrites: dict[str, Rewrites] = {}
    if data.rewrites is not None:
        check_rewrites_dir(data.rewrites, STYLES, SCENARIOS)
        index: dict[str, Problem] = {}
        for p in train_rows + source_test:
            index.setdefault(problem_key(p.problem), p)
        for style in STYLES:
            path = rewrite_path(data.rewrites, style, scenario)
            if path.is_file():
                rewrites[style] = load_rewrites(path, scenario, index, levels, data.max_loss_share)
        report["rewrites"] = {style: r.report() for style, r in rewrites.items()}

    def in_levels(problems: list[Problem]) -> list[Problem]:
        return [p for p in problems if levels is None or p.level in levels]

    if rewrites:  # the training problems are those the rewrites cover, in the dataset's order
        covered = set().union(*(r.solutions for r in rewrites.values()))
        train_candidates = [p for key, p in index.items() if key in covered]
    else:
        train_candidates = in_levels(train_rows)
    test_candidates = in_levels(test_rows)

    # The llm rewriter's solutions come after sampling.
    def solvers(split: str) -> dict[str, Callable[[Problem], tuple[str | None, str | None]]]:
        solve = {}
        for style in STYLES:
            if split == "train" and style in rewrites:
                solutions = rewrites[style].solutions
                solve[style] = lambda p, s=solutions: (s.get(problem_key(p.problem)), "no rewrite of the problem")
            elif style == "cot":
                solve[style] = lambda p: (cot_solution(p, dataset), None)
            elif rewriter is None:
                solve[style] = lambda p: rules_cod(p, scenario)
        return solve

    report["solutions"] = {}
    chosen = {}
    # A test problem is kept without a solution: dropping it would bias the test set to what the rules can draft.
    for split, candidates, exclude in (("test", test_candidates, set()), ("train", train_candidates, test_keys)):
        solve, required = solvers(split), split == "train"
        size = data.num_train if split == "train" else data.num_test
        # A string seed is hashed deterministically by `random`, so the sample is reproducible across runs.
        rng = random.Random(f"{seed}/{scenario}/{split}")
        if required:  # drawn from the problems with a solution in both styles
            pool, excluded, dropped = _pool(candidates, solve, exclude)
            sample = rng.sample(pool, min(size, len(pool)))
        else:  # drawn from all, then solved
            pool, excluded, _ = _pool(candidates, {}, exclude)
            drawn = [p for p, _, _ in rng.sample(pool, min(size, len(pool)))]
            sample, _, dropped = _pool(drawn, solve, set(), required=False)
        counts = {"candidates": len(candidates), "excluded": dict(excluded), "pool": len(pool),
                  "sampled": len(sample)}
        if "cod" not in solve:  # the llm rewriter, on the sampled problems only
            sample, counts["rules_fallback"] = _llm_solutions(sample, rewriter, scenario, data, dropped, required)
        if not required:  # counted among the written problems
            dropped = Counter(reason for _, _, missing in sample for reason in missing)
        counts["dropped" if required else "without_solution"] = dict(
            sorted(dropped.items(), key=lambda kv: (-kv[1], kv[0])))
        counts["kept"] = len(sample)
        report[split] = counts
        report["solutions"][split] = {
            style: f"rewrites ({rewrites[style].path})" if style in rewrites and split == "train"
            else "dataset" if style == "cot" else "rules" if style in solve else "llm" for style in STYLES}
        if dropped:
            log.warning("%s %s: %s: %s", scenario, split, "dropped from both styles" if required
                        else "kept without a solution in the style", dict(dropped))
        if not sample:
            where = "data.test_sets" if split == "test" and data.test_sets else f"data.{dataset}"
            raise ValueError(f"{scenario} {split}: no problem left: {len(candidates)} candidates of levels "
                             f"{list(levels) if levels else 'any'} from {where}, excluded: {counts['excluded']}, "
                             f"dropped for want of a solution in every style ({report['solutions'][split]}): "
                             f"{counts.get('dropped', {})}")
        chosen[split] = sample

    overlap = {problem_key(p.problem) for p, _, _ in chosen["train"]} & test_keys
    report["test_problems_in_train"] = len(overlap)
    if overlap:  # the exclusion above makes this impossible; the check keeps it so
        raise AssertionError(f"{scenario}: {len(overlap)} test problems in the training sample")

    for style, paths in outputs.items():
        for split, path in (("train", paths.train), ("test", paths.test)):
            write_jsonl(path, (make_record(p, scenario, style, solutions[style])
                               for p, solutions, _ in chosen[split]))
            log.info("%s/%s %s: %d records -> %s", style, scenario, split, len(chosen[split]), path)
        with atomic_path(paths.report) as tmp:
            Path(tmp).write_text(json.dumps({"style": style, **report}, indent=1) + "\n")
    return report


def _pool(problems: list[Problem], solve, exclude: set[str], required: bool = True):
    """([(problem, {style: solution}, [why one is missing])], excluded, dropped) over `problems`, each once and
    none in `exclude`; `required`: a problem lacking a style's solution is dropped."""
    pool, excluded, dropped, seen = [], Counter(), Counter(), set()
    for p in problems:
        key = problem_key(p.problem)
        if key in seen:
            excluded["duplicate problem"] += 1
            continue
        seen.add(key)
        if key in exclude:
            excluded["in a test set"] += 1
            continue
        solutions, missing = {}, []
        for style, solver in solve.items():
            solution, reason = solver(p)
            if solution is None:
                missing.append(f"{style}: {reason}")
                if required:
                    break
            solutions[style] = solution
        if required and missing:
            dropped.update(missing)
        else:
            pool.append((p, solutions, missing))
    return pool, excluded, dropped


def _llm_solutions(sample, rewriter: Rewriter, scenario: str, data: DataConfig, dropped: Counter, required: bool):
    """The sample with its llm rewrites as CoD (or the rules' fallback draft), and how many took the fallback."""
    rewritten = rewriter([p for p, _, _ in sample], scenario)
    kept, num_fallback = [], 0
    for (p, solutions, missing), solution in zip(sample, rewritten):
        reason = None
        if solution is None and data.rewrite_fallback == "rules":
            solution, rules_reason = rules_cod(p, scenario)
            num_fallback += solution is not None
            if solution is None:
                reason = f"cod: llm rewrite rejected, rules: {rules_reason}"
        elif solution is None:
            reason = "cod: llm rewrite rejected (answer missing or wrong, or no draft)"
        if reason is not None and required:
            dropped[reason] += 1
        else:
            kept.append((p, {**solutions, "cod": solution}, missing + [reason] * (reason is not None)))
    return kept, num_fallback
