"""Pre-written solutions as a source: the seed project's `{style}_{scenario}.jsonl` (`instruction`, `output`),
matched to the dataset's problems by text and kept where the answer is the reference."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from specdraft.data.sources import Problem, Rejected, check_loss, count_reasons, problem_key
from specdraft.data.styles import solution_rejection
from specdraft.plumbing.jsonl import JsonlError, scan_jsonl

log = logging.getLogger(__name__)

REWRITE_FIELDS = ("instruction", "output")


@dataclass
class Rewrites:
    """One style's rewrites for one scenario: the solutions kept, by problem key, and every row's fate."""

    path: str
    solutions: dict[str, str] = field(default_factory=dict)
    num_rows: int = 0
    num_matched: int = 0  # rows whose problem is in the dataset, whatever happened to them next
    dropped: list[Rejected] = field(default_factory=list)

    def report(self) -> dict:
        return {"file": self.path, "rows": self.num_rows, "matched": self.num_matched, "kept": len(self.solutions),
                "dropped": count_reasons(self.dropped)}


def rewrite_path(directory: str | Path, style: str, scenario: str) -> Path:
    return Path(directory) / f"{style}_{scenario}.jsonl"


def check_rewrites_dir(directory: str | Path, styles, scenarios) -> None:
    """Fail when `data.rewrites` is not a directory holding at least one `{style}_{scenario}.jsonl`."""
    path = Path(directory)
    if not path.is_dir():
        raise ValueError(f"data.rewrites: {path} is not a directory")
    expected = [rewrite_path(path, st, sc).name for st in styles for sc in scenarios]
    if not any((path / name).is_file() for name in expected):
        raise ValueError(f"data.rewrites: {path} holds none of the files {expected}")


def load_rewrites(path: str | Path, scenario: str, index: dict[str, Problem], levels: tuple[int, ...] | None,
                  max_loss_share: float) -> Rewrites:
    """A rewrites file's rows matched to `index` ({problem_key: Problem}); malformed rows fail past `max_loss_share`."""
    rewrites = Rewrites(str(path))
    malformed, seen = [], {}
    for line_number, row in scan_jsonl(path, REWRITE_FIELDS):
        rewrites.num_rows += 1
        where = (str(path), line_number)
        if isinstance(row, JsonlError):
            malformed.append(Rejected(*where, row.reason, row.detail))
            continue
        key = problem_key(str(row["instruction"]))
        problem = index.get(key)
        if problem is None:
            rewrites.dropped.append(Rejected(*where, "problem not in the dataset"))
            continue
        rewrites.num_matched += 1
        if key in seen:
            rewrites.dropped.append(Rejected(*where, "duplicate problem", f"first at line {seen[key]}"))
            continue
        seen[key] = line_number
        if levels is not None and problem.level not in levels:
            rewrites.dropped.append(Rejected(*where, f"problem outside levels {list(levels)}"))
            continue
        output = str(row["output"]).strip()
        reason = solution_rejection(output, problem.answer, scenario)
        if reason is not None:
            rewrites.dropped.append(Rejected(*where, reason))
            continue
        rewrites.solutions[key] = output
    if rewrites.num_rows == 0:
        raise ValueError(f"{path}: the file is empty (no JSON lines; from data.rewrites)")
    check_loss(malformed, rewrites.num_rows - len(malformed), max_loss_share, str(path))
    rewrites.dropped = malformed + rewrites.dropped
    log.info("%s: %d rows, %d matched to the dataset, %d kept; dropped: %s", path, rewrites.num_rows,
             rewrites.num_matched, len(rewrites.solutions), count_reasons(rewrites.dropped))
    return rewrites
