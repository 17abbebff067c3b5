"""Load GSM8K and MATH problems from local JSONL files or pinned Hugging Face hub datasets.

Local files have the shape of the original releases: GSM8K `{question, answer}`, MATH
`{problem, solution, level, type}` (extra fields are kept out). Both become `Problem`s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from specdraft.answers import SEPARATOR, last_boxed
from specdraft.config import SourceConfig
from specdraft.jsonl import JsonlError, scan_jsonl

# Which dataset and which MATH levels each scenario draws from.
SCENARIO_DATASET = {"easy": "gsm8k", "medium": "math", "hard": "math"}
SCENARIO_LEVELS = {"easy": None, "medium": (1, 2), "hard": (3, 4)}

_GSM8K_FIELDS = ("question", "answer")
_MATH_FIELDS = ("problem", "solution", "level")
_LEVEL = re.compile(r"Level (\d)")


@dataclass(frozen=True)
class Problem:
    """One source problem with its original (Chain of Thought) solution and reference answer."""

    id: str
    problem: str
    solution: str
    answer: str
    level: int | None = None
    subject: str | None = None


@dataclass(frozen=True)
class Rejected:
    """A source row that could not be used, and where it is."""

    where: str
    line_number: int
    reason: str

    def __str__(self) -> str:
        return f"{self.where}:{self.line_number}: {self.reason}"


def load_problems(dataset: str, split: str, source: SourceConfig) -> tuple[list[Problem], list[Rejected]]:
    """All usable problems of `dataset` ('gsm8k' or 'math') and `split` ('train' or 'test'), and the rows
    that were not (malformed JSON, missing fields, no parseable answer), each with its file and line."""
    rows = _local_rows(dataset, split, source) if source.kind == "local" else _hub_rows(split, source)
    parse = _gsm8k_problem if dataset == "gsm8k" else _math_problem
    problems, rejected = [], []
    for where, line_number, row in rows:
        if isinstance(row, Rejected):
            rejected.append(row)
            continue
        try:
            problem = parse(row, f"{dataset}/{split}/{line_number}")
        except (ValueError, KeyError) as e:
            rejected.append(Rejected(str(where), line_number, str(e)))
            continue
        if problem is not None:
            problems.append(problem)
    return problems, rejected


def check_loss(rejected: list[Rejected], num_kept: int, max_loss_share: float, what: str) -> None:
    """Fail when more than `max_loss_share` of a source's rows were rejected."""
    total = num_kept + len(rejected)
    if total and len(rejected) / total > max_loss_share:
        shown = "\n  ".join(str(r) for r in rejected[:10])
        raise ValueError(
            f"{what}: {len(rejected)} of {total} rows rejected, more than data.max_loss_share="
            f"{max_loss_share}; first ones:\n  {shown}"
        )


def _local_rows(dataset: str, split: str, source: SourceConfig):
    path = Path(source.path) / f"{split}.jsonl"
    required = _GSM8K_FIELDS if dataset == "gsm8k" else _MATH_FIELDS
    for line_number, row in scan_jsonl(path, required):
        if isinstance(row, JsonlError):
            row = Rejected(str(path), line_number, row.reason)
        yield path, line_number, row


def _hub_rows(split: str, source: SourceConfig):
    from datasets import load_dataset

    data = load_dataset(source.path, source.name, revision=source.revision, split=split)
    where = f"{source.path}@{source.revision or 'main'}[{split}]"
    for index, row in enumerate(data):
        yield where, index + 1, row


def _gsm8k_problem(row: dict, default_id: str) -> Problem:
    solution = str(row["answer"])
    if SEPARATOR not in solution:
        raise ValueError(f"GSM8K answer has no '{SEPARATOR}' final answer")
    answer = solution.rsplit(SEPARATOR, 1)[1].strip().replace(",", "")
    return Problem(id=str(row.get("id", default_id)), problem=str(row["question"]).strip(),
                   solution=solution.strip(), answer=answer)


def _math_problem(row: dict, default_id: str) -> Problem | None:
    match = _LEVEL.search(str(row["level"]))
    if match is None:  # MATH has two problems labelled "Level ?": they belong to no scenario
        return None
    # A few MATH answers end their box with the sentence's period ("\\boxed{-\\frac{5}{3}.}"): not part of it.
    answer = (last_boxed(str(row["solution"])) or "").rstrip(".").strip()
    if not answer:
        raise ValueError("MATH solution has no \\boxed{} answer")
    return Problem(
        id=str(row.get("unique_id", default_id)),
        problem=str(row["problem"]).strip(),
        solution=str(row["solution"]).strip(),
        answer=answer,
        level=int(match.group(1)),
        subject=row.get("type"),
    )
