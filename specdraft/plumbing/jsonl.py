"""JSON Lines I/O with errors that name the file and line, and atomic writes."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from typing import Any

from specdraft.plumbing.artifacts import rebuild_hint
from specdraft.plumbing.atomic import atomic_path


class JsonlError(ValueError):
    """A JSONL line that cannot be used; `reason` is what `report.json` counts, `detail` where in the line it is."""

    def __init__(self, path: str | os.PathLike, line_number: int, reason: str, detail: str = ""):
        self.path = str(path)
        self.line_number = line_number
        self.reason = reason
        self.detail = detail
        hint = rebuild_hint(path)
        super().__init__(f"{self.path}:{line_number}: {reason}" + (f" ({detail})" if detail else "")
                         + (f" — {hint}" if hint else ""))


def scan_jsonl(path: str | os.PathLike,
               required: Iterable[str] = ()) -> Iterator[tuple[int, dict[str, Any] | JsonlError]]:
    """Yield (line_number, record) for every non-blank line, with a `JsonlError` in place of the record
    when the line is not UTF-8 text holding a JSON object with every `required` field."""
    required = tuple(required)
    with open(path, "rb") as f:
        for line_number, raw in enumerate(f, start=1):
            try:
                # A byte-order mark at the start of the file is not part of the first record.
                line = raw.decode("utf-8-sig" if line_number == 1 else "utf-8")
            except UnicodeDecodeError as e:
                yield line_number, JsonlError(path, line_number, "not UTF-8 text",
                                              f"byte 0x{raw[e.start]:02x} at column {e.start + 1}")
                continue
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                yield line_number, JsonlError(path, line_number, "invalid JSON", f"{e.msg} at column {e.colno}")
                continue
            if not isinstance(record, dict):
                yield line_number, JsonlError(path, line_number,
                                              f"expected a JSON object, got {type(record).__name__}")
                continue
            missing = [k for k in required if k not in record]
            if missing:
                yield line_number, JsonlError(path, line_number, f"missing field(s) {missing}")
                continue
            yield line_number, record


def iter_jsonl(path: str | os.PathLike, required: Iterable[str] = ()) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line_number, record) for every non-blank line; raise JsonlError on the first bad one."""
    for line_number, record in scan_jsonl(path, required):
        if isinstance(record, JsonlError):
            raise record
        yield line_number, record


def read_jsonl(path: str | os.PathLike, required: Iterable[str] = ()) -> list[dict[str, Any]]:
    return [record for _, record in iter_jsonl(path, required)]


def write_jsonl(path: str | os.PathLike, records: Iterable[dict[str, Any]]) -> int:
    """Write records atomically, one JSON object per line; return how many were written."""
    count = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count

