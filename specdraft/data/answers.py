"""Final-answer extraction and equivalence, shared by prepare, distill and bench: the text after `####` (the
Chain of Draft paper's format), else MATH's last `\\boxed{}`."""

from __future__ import annotations

import re
from specdraft.plumbing.names import SCENARIOS

SEPARATOR = "####"

_NUMBER = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)$")
_THOUSANDS = re.compile(r"^[-+]?\d{1,3}(,\d{3})+(\.\d*)?%?$")
# A number with a currency sign before it or a unit (no digit) after it: `€28`, `21 meters`, `5 min/km`.
_NUMBER_WITH_UNIT = re.compile(r"^\s*(?:\\?\$|€|£)?\s*([-+]?[\d.,]*\d)(?:\s*[^\W\d_][^\d]*)?$")


def closing_brace(text: str, open_index: int) -> int:
    """Index of the `}` that closes the `{` at `open_index`, nested braces included; -1 if unclosed."""
    depth = 0
    for j in range(open_index, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    return -1


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` or `\\fbox{...}` in `text`, nested braces included."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    i = text.find("{", start)
    if i < 0:
        # `\boxed 5`: the argument is the next token.
        rest = text[start:].split(maxsplit=1)
        return rest[1].split("$")[0].strip() if len(rest) > 1 else None
    j = closing_brace(text, i)
    return text[i + 1 : j].strip() if j >= 0 else None


def extract_answer(text: str, scenario: str) -> str | None:
    """The final answer of a solution: the text after the last `####`, else (MATH) the last `\\boxed{}`."""
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario must be one of {list(SCENARIOS)}, got {scenario!r}")
    if SEPARATOR in text:
        answer = text.rsplit(SEPARATOR, 1)[1].strip()
        # The answer is the first line after the separator; a model may ramble on afterwards.
        answer = answer.splitlines()[0].strip() if answer else ""
        answer = answer.strip().rstrip(".").strip()
        if answer.startswith("$") and answer.endswith("$") and len(answer) > 1:
            answer = answer[1:-1].strip()
        boxed = last_boxed(answer)
        return (boxed if boxed is not None else answer) or None
    if scenario == "easy":
        return None
    return last_boxed(text)


def normalize_number(text: str) -> str | None:
    """`$1,080.00` -> `1080`; None when `text` is not a plain number (`1,2` is a list, never 12)."""
    t = text.strip().replace("\\$", "").replace("$", "").replace("\\!", "").replace("{,}", ",")
    t = t.replace("\\%", "%").rstrip(".")
    if "," in t:
        if not _THOUSANDS.match(t):
            return None
        t = t.replace(",", "")
    if re.search(r"\d\s+\d", t):  # `2 3` is two numbers
        return None
    t = t.replace(" ", "")
    if t.endswith("%"):
        t = t[:-1]
    if not _NUMBER.match(t):
        return None
    if "." in t:
        t = t.rstrip("0").rstrip(".")
    sign = "-" if t.startswith("-") else ""
    t = t.lstrip("+-").lstrip("0") or "0"
    if t.startswith("."):
        t = "0" + t
    return "0" if t == "0" else sign + t


def is_equivalent(prediction: str | None, reference: str, scenario: str = "hard") -> bool:
    """Whether a predicted answer equals the reference: as numbers when both are, else (MATH) by `math-verify`."""
    if prediction is None:
        return False
    if prediction.strip() == reference.strip():
        return True
    a, b = normalize_number(prediction), normalize_number(reference)
    if a is not None and b is not None:
        return a == b
    if scenario == "easy":
        # GSM8K answers are plain numbers: a unit after one is not part of it (`21 meters`, `25ml`, `€28`).
        m = _NUMBER_WITH_UNIT.match(prediction)
        return m is not None and b is not None and normalize_number(m.group(1)) == b
    return _math_verify(prediction, reference)


def _math_verify(prediction: str, reference: str) -> bool:
    from math_verify import parse, verify

    try:
        gold = parse(f"${reference}$")
        pred = parse(f"${prediction}$")
        return bool(gold) and bool(pred) and bool(verify(gold, pred))
    except Exception:  # math-verify raises on pathological LaTeX; an unparseable answer is not equivalent
        return False
