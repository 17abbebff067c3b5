"""Load GSM8K and MATH problems from local JSONL files or pinned Hugging Face hub datasets; a row that cannot be
used is a `Rejected` with its file, line and reason."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from specdraft.data.answers import SEPARATOR, last_boxed
from specdraft.plumbing.config import SourceConfig
from specdraft.plumbing.jsonl import JsonlError, scan_jsonl

SCENARIO_DATASET = {"easy": "gsm8k", "medium": "math", "hard": "math"}
SCENARIO_LEVELS = {"easy": None, "medium": (1, 2), "hard": (3, 4)}

# The names each field may have: MATH's original release or the seed project's test sets (`answer`: the solution).
_FIELDS = {
    "gsm8k": (("question",), ("answer",)),
    "math": (("problem", "question"), ("solution", "answer"), ("level",)),
}
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
    """A source row that could not be used, where it is, and why (`reason` is what `report.json` counts)."""

    where: str
    line_number: int
    reason: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.where}:{self.line_number}: {self.reason}" + (f" ({self.detail})" if self.detail else "")


def problem_key(text: str) -> str:
    """A problem's text with its whitespace normalised: how rewrites and test sets are matched to problems."""
    return " ".join(text.split())


def load_problems(dataset: str, split: str, source: SourceConfig) -> tuple[list[Problem], list[Rejected]]:
    """The usable problems of `dataset` ('gsm8k' or 'math') and `split` ('train' or 'test'), and the rejected rows."""
    if source.kind == "local":
        return load_file(dataset, Path(source.path) / f"{split}.jsonl", f"{dataset}/{split}",
                         f"data.{dataset}.path")
    return _parse_rows(dataset, _hub_rows(split, source), f"{dataset}/{split}")


def load_file(dataset: str, path: str | Path, id_prefix: str, key: str) -> tuple[list[Problem], list[Rejected]]:
    """The problems of one JSONL file; `key`: the config key that named it; an id-less row gets `{id_prefix}/{line}`."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file (from {key})")
    rows = [(path, n, row) for n, row in scan_jsonl(path)]
    if not rows:
        raise ValueError(f"{path}: the file is empty (no JSON lines; from {key})")
    return _parse_rows(dataset, rows, id_prefix)


def check_loss(rejected: list[Rejected], num_kept: int, max_loss_share: float, what: str) -> None:
    """Fail when more than `max_loss_share` of a source's rows were rejected."""
    total = num_kept + len(rejected)
    if total and len(rejected) / total > max_loss_share:
        shown = "\n  ".join(str(r) for r in rejected[:10])
        raise ValueError(
            f"{what}: {len(rejected)} of {total} rows rejected, more than data.max_loss_share="
            f"{max_loss_share}; first ones:\n  {shown}"
        )


def count_reasons(rejected) -> dict[str, int]:
    """{reason: count} over rejected rows, most frequent first (what `report.json` shows)."""
    counts = Counter(r.reason for r in rejected)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _parse_rows(dataset: str, rows, id_prefix: str) -> tuple[list[Problem], list[Rejected]]:
    parse = _gsm8k_problem if dataset == "gsm8k" else _math_problem
    problems, rejected = [], []
    for where, line_number, row in rows:
        if isinstance(row, JsonlError):
            rejected.append(Rejected(str(where), line_number, row.reason, row.detail))
            continue
        fields = [next((name for name in names if name in row), None) for names in _FIELDS[dataset]]
        missing = [names[0] for names, name in zip(_FIELDS[dataset], fields) if name is None]
        if missing:
            rejected.append(Rejected(str(where), line_number, f"missing field(s) {missing}"))
            continue
        try:
            problems.append(parse(row, *fields, str(row.get("id", row.get("unique_id", f"{id_prefix}/{line_number}")))))
        except ValueError as e:
            rejected.append(Rejected(str(where), line_number, str(e)))
    return problems, rejected


def _hub_rows(split: str, source: SourceConfig):
    from datasets import load_dataset

    data = load_dataset(source.path, source.name, revision=source.revision, split=split)
    where = f"{source.path}@{source.revision or 'main'}[{split}]"
    for index, row in enumerate(data):
        yield where, index + 1, row


def _gsm8k_problem(row: dict, question: str, answer: str, id_: str) -> Problem:
    solution = str(row[answer])
    if SEPARATOR not in solution:
        raise ValueError(f"no '{SEPARATOR}' final answer")
    reference = solution.rsplit(SEPARATOR, 1)[1].strip().replace(",", "")
    if not reference:
        raise ValueError(f"nothing after '{SEPARATOR}'")
    return Problem(id=id_, problem=str(row[question]).strip(), solution=solution.strip(), answer=reference)


def _math_problem(row: dict, problem: str, solution: str, level: str, id_: str) -> Problem:
    # A few MATH answers end their box with the sentence's period ("\\boxed{-\\frac{5}{3}.}"): not part of it.
    answer = (last_boxed(str(row[solution])) or "").rstrip(".").strip()
    if not answer:
        raise ValueError("no \\boxed{} answer")
    match = _LEVEL.search(str(row[level]))  # MATH has two problems labelled "Level ?": no scenario's
    return Problem(
        id=id_,
        problem=str(row[problem]).strip(),
        solution=str(row[solution]).strip(),
        answer=answer,
        level=int(match.group(1)) if match else None,
        subject=row.get("type"),
    )
