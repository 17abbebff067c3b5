"""Turn a source solution into each style's solution; both end in `#### <answer>`.

CoT is the dataset's own reasoning (GSM8K's `<<a*b=c>>` calculator annotations removed). CoD is the
deterministic "rules" rewrite: the chain of equations the solution computes, one terse draft per step,
GSM8K's taken from its calculator annotations and MATH's from the equations in its LaTeX.
"""

from __future__ import annotations

import re

from specdraft.answers import SEPARATOR, closing_brace
from specdraft.data.sources import Problem

_CALC = re.compile(r"<<([^<>]*)>>")
# An equation written out in GSM8K prose when the annotation is missing: "12 * 3 = 36".
_INLINE_EQ = re.compile(r"\$?\d[\d.,]*(?:\s*[-+*/x×]\s*\$?\d[\d.,]*)+\s*=\s*\$?\d[\d.,]*")
# Inline and display math in a MATH solution.
_MATH_SEGMENT = re.compile(r"\$\$(.+?)\$\$|\\\[(.+?)\\\]|\$(.+?)\$|\\\((.+?)\\\)", re.S)
_BOXED = re.compile(r"\\(?:boxed|fbox)\{")
_RELATION = re.compile(r"=|\\Rightarrow|\\implies|\\le|\\ge|<|>")

MAX_MATH_STEPS = 5
MAX_STEP_CHARS = 60


def cot_solution(problem: Problem, dataset: str) -> str:
    """The Chain of Thought solution: the source reasoning, ending in `#### <answer>`."""
    if dataset == "gsm8k":
        body = _CALC.sub("", problem.solution).rsplit(SEPARATOR, 1)[0].strip()
    else:
        body = problem.solution.strip()
    return f"{body}\n{SEPARATOR} {problem.answer}"


def cod_solution(problem: Problem, dataset: str) -> str:
    """The Chain of Draft solution built by rules: `step; step; ... #### <answer>`."""
    steps = _gsm8k_steps(problem.solution) if dataset == "gsm8k" else _math_steps(problem.solution)
    draft = "; ".join(steps)
    return f"{draft} {SEPARATOR} {problem.answer}" if draft else f"{SEPARATOR} {problem.answer}"


def _gsm8k_steps(solution: str) -> list[str]:
    steps = [s.replace(" ", "") for s in _CALC.findall(solution) if "=" in s]
    if steps:
        return steps
    body = solution.rsplit(SEPARATOR, 1)[0]
    return [re.sub(r"\s+", "", m).replace("$", "") for m in _INLINE_EQ.findall(body)]


def _unbox(latex: str) -> str:
    """`x=\\boxed{5}` -> `x=5` (nested braces kept)."""
    while (m := _BOXED.search(latex)) is not None:
        j = closing_brace(latex, m.end() - 1)
        if j < 0:  # unclosed: drop the command, keep the rest
            return latex[: m.start()] + latex[m.end() :]
        latex = latex[: m.start()] + latex[m.end() : j] + latex[j + 1 :]
    return latex


def _math_steps(solution: str) -> list[str]:
    steps = []
    for m in _MATH_SEGMENT.finditer(solution):
        segment = next(g for g in m.groups() if g is not None)
        segment = re.sub(r"\s+", " ", _unbox(segment)).strip().rstrip(".,")
        if _RELATION.search(segment) and len(segment) <= MAX_STEP_CHARS and segment not in steps:
            steps.append(segment)
    # The steps closest to the answer carry the most; keep those.
    return steps[-MAX_MATH_STEPS:]


def style_solution(problem: Problem, dataset: str, style: str) -> str:
    return cot_solution(problem, dataset) if style == "cot" else cod_solution(problem, dataset)
