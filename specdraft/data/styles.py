"""Turn a source solution into each style's, ending in `#### <answer>`: CoT is the dataset's reasoning, CoD the
"rules" draft of the equations it computes (GSM8K's calculator annotations, MATH's LaTeX) up to the answer."""

from __future__ import annotations

import re

from specdraft.data.answers import SEPARATOR, closing_brace, extract_answer, is_equivalent, normalize_number
from specdraft.data.sources import Problem

_CALC = re.compile(r"<<([^<>]*)>>")
# An equation in GSM8K prose when the annotation is missing: "12 * 3 = 36", "10+4(66)=274", "40/.4=100".
_OPERAND = r"\$?\(*\.?\d[\d.,]*\)*%?"
_INLINE_EQ = re.compile(rf"{_OPERAND}(?:(?:\s*[-+*/x×÷]\s*|(?=\())(?:{_OPERAND}))+\s*=\s*\$?\.?\d[\d.,]*%?")
# Inline and display math in a MATH solution, and the display environments written outside `$...$`.
_ENVIRONMENTS = "align|aligned|eqnarray|gather|gathered|equation|multline"
_MATH_SEGMENT = re.compile(
    r"\$\$(.+?)\$\$|\\\[(.+?)\\\]|\\begin\{(?:" + _ENVIRONMENTS + r")\*?\}(.+?)\\end\{(?:" + _ENVIRONMENTS
    + r")\*?\}|\$(.+?)\$|\\\((.+?)\\\)",
    re.S,
)
_BOXED = re.compile(r"\\(?:boxed|fbox)\{")
# One LaTeX token; a command is read whole, so `\left` is never `\le`.
_TOKEN = re.compile(r"\\begin\{[^{}]*\}|\\end\{[^{}]*\}|\\\\|\\[A-Za-z]+|\\.|.", re.S)
_RELATIONS = {"=", "<", ">", "\\le", "\\leq", "\\ge", "\\geq", "\\lt", "\\gt", "\\ne", "\\neq", "\\approx",
              "\\equiv", "\\Rightarrow", "\\implies", "\\Longrightarrow"}
# Relations that separate claims rather than link the members of one chain.
_IMPLICATIONS = {"\\Rightarrow", "\\implies", "\\Longrightarrow"}
# Relations whose right-hand side is what the step computes.
_YIELDING = {"=", "\\approx", "\\equiv"} | _IMPLICATIONS
_DROPPED = {"&", "\\left", "\\right", "\\qquad", "\\quad", "\\,", "\\;", "\\!", "\\:", "\\displaystyle",
            "\\nonumber", "\\notag"}

MAX_MATH_STEPS = 5
MAX_STEP_CHARS = 60
# The last equations of a solution tried as the answer's step with `math-verify` (exact matches: all).
MAX_VERIFIED_STEPS = 2


class NoDraft(ValueError):
    """A solution the rules cannot draft; `reason` is the short cause counted in `report.json`."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


def cot_solution(problem: Problem, dataset: str) -> str:
    if dataset == "gsm8k":
        body = _CALC.sub("", problem.solution).rsplit(SEPARATOR, 1)[0].strip()
    else:
        body = problem.solution.strip()
    return f"{body}\n{SEPARATOR} {problem.answer}"


def cod_solution(problem: Problem, dataset: str) -> str:
    """The rules' Chain of Draft, `step; step; ... #### <answer>`; `NoDraft` when no step yields the answer."""
    if dataset == "gsm8k":
        steps = _gsm8k_steps(problem.solution, problem.answer)
    else:
        steps = _math_steps(problem.solution, problem.answer)
    return f"{'; '.join(steps)} {SEPARATOR} {problem.answer}"


def draft_steps(solution: str) -> list[str]:
    """The steps of a Chain of Draft solution: `a; b; c #### x` -> [a, b, c]."""
    body = solution.rsplit(SEPARATOR, 1)[0]
    return [s.strip() for s in body.split(";") if s.strip()]


def solution_rejection(solution: str, reference: str, scenario: str, *, last_step_yields: bool = False) -> str | None:
    """Why a solution cannot be used, as `report.json` counts it; None when it can."""
    if SEPARATOR not in solution:
        return f"no '{SEPARATOR}' answer"
    if not is_equivalent(extract_answer(solution, scenario), reference, scenario):
        return "answer differs from the reference"
    steps = draft_steps(solution)
    if not steps:
        return f"no step before '{SEPARATOR}'"
    if last_step_yields and not step_yields(steps[-1], reference, scenario):
        return "last step does not yield the answer"
    return None


def step_yields(step: str, answer: str, scenario: str, *, verify: bool = True) -> bool:
    """Whether `step` ends in `answer`: the member after its last `=` (`a+b=0` yields 0) equals it,
    as text or as a number, or (with `verify`, MATH) by `math-verify`."""
    return _yields(_members(step), answer, scenario, verify)


def _yields(members: list[str], answer: str, scenario: str, verify: bool) -> bool:
    if len(members) < 3 or members[-2] not in _YIELDING:  # `22 > 20` does not yield 20
        return False
    last = members[-1]
    if _squash(last) == _squash(answer):
        return True
    a, b = normalize_number(last), normalize_number(answer)
    if a is not None and b is not None:
        return a == b
    return verify and scenario != "easy" and is_equivalent(last, answer, scenario)


def _squash(latex: str) -> str:
    """LaTeX compared as text: no spaces, sizing or `\\dfrac`/`\\tfrac` variants."""
    tokens = [t for t in _TOKEN.findall(latex) if t not in _DROPPED and not t.isspace()]
    return "".join("\\frac" if t in ("\\dfrac", "\\tfrac") else t for t in tokens).rstrip(".,")


def _gsm8k_steps(solution: str, answer: str) -> list[str]:
    """The calculator annotations (else the prose equations) up to the last that computes the answer."""
    def computed(equations: list[str]) -> list[str]:  # `6=6` (a bare result) is no step
        steps = [re.sub(r"\s+", "", e).replace("$", "").rstrip(".,") for e in equations]
        return [s for s in steps if "=" in s and re.search(r"[-+*/x×÷^%(]", s.split("=", 1)[0])]

    steps = []
    for line in solution.rsplit(SEPARATOR, 1)[0].splitlines():
        prose = _CALC.sub(lambda m: " " * len(m.group(0)), line)
        for step in computed(_CALC.findall(line)) or computed(_INLINE_EQ.findall(prose)):
            if step not in steps:
                steps.append(step)
    if not steps:
        raise NoDraft("no equation in the solution")
    for i in range(len(steps) - 1, -1, -1):
        if step_yields(steps[i], answer, "easy"):
            return steps[: i + 1]
    raise NoDraft("no step yields the answer")


def _unbox(latex: str) -> str:
    """`x=\\boxed{5}` -> `x=5` (nested braces kept)."""
    while (m := _BOXED.search(latex)) is not None:
        j = closing_brace(latex, m.end() - 1)
        if j < 0:  # unclosed: drop the command, keep the rest
            return latex[: m.start()] + latex[m.end() :]
        latex = latex[: m.start()] + latex[m.end() : j] + latex[j + 1 :]
    return latex


def _members(latex: str) -> list[str]:
    """`a = b \\le c` -> ['a', '=', 'b', '\\le', 'c']: members and the relations between them, split at the
    top level only (not inside braces, environments or balanced parentheses)."""
    tokens = [t for t in _TOKEN.findall(latex) if t not in _DROPPED]
    parens = latex.count("(") == latex.count(")")  # intervals such as [1, 2) do not nest
    parts, current, depth = [], [], 0
    for t in tokens:
        if t == "{" or t.startswith("\\begin{") or (parens and t == "("):
            depth += 1
        elif t == "}" or t.startswith("\\end{") or (parens and t == ")"):
            depth -= 1
        if depth == 0 and t in _RELATIONS:
            parts += [_clean("".join(current)), t]
            current = []
        else:
            current.append(t)
    return parts + [_clean("".join(current))]


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().strip(".,;").strip()


def _rows(segment: str) -> list[str]:
    """A display's rows: split at `\\\\` outside nested environments (matrices keep theirs)."""
    rows, current, depth = [], [], 0
    for t in _TOKEN.findall(segment):
        depth += t.startswith("\\begin{") - t.startswith("\\end{")
        if t == "\\\\" and depth == 0:
            rows.append("".join(current))
            current = []
        else:
            current.append(t)
    return rows + ["".join(current)]


def _chains(solution: str) -> list[list[str]]:
    """Every chain of relations in the solution's math, in order; an aligned row that starts with a
    relation (`&= ...`) continues the chain above it."""
    chains: list[list[str]] = []
    for m in _MATH_SEGMENT.finditer(solution.replace("\\$", "")):
        segment = _unbox(next(g for g in m.groups() if g is not None))
        continues = False
        for row in _rows(segment):
            members = _members(row)
            while len(members) >= 3 and not members[-1]:  # a row ending in `\Rightarrow`
                members = members[:-2]
            if len(members) < 3:
                continues = False
                continue
            if continues and not members[0]:
                chains[-1] += members[1:]
            elif members[0]:
                chains.append(members)
            else:  # a continuation of nothing
                continue
            continues = True
    return chains


def _draft(members: list[str], keep_long: bool) -> str | None:
    """A chain as one draft step of at most MAX_STEP_CHARS, shortened from the middle; too long: None unless
    `keep_long` (the answer's step)."""
    def text(ms: list[str]) -> str:
        return " ".join(ms) if len(ms) > 3 else f"{ms[0]}{ms[1]}{ms[2]}" if ms[1] == "=" else " ".join(ms)

    starts = [i + 1 for i, m in enumerate(members) if m in _IMPLICATIONS and members[i + 1 :][:1] != [""]]
    claim = members[starts[-1]:] if starts and starts[-1] < len(members) - 1 else members
    if len(claim) < 3 or not claim[0]:
        claim = members[-3:]
    forms = [members, claim]
    if all(r == "=" for r in claim[1::2]) and len(claim) > 5:
        forms += [claim[:1] + claim[-4:], claim[:1] + claim[-2:]]
    forms.append(claim[-3:])
    for form in forms:
        if len(text(form)) <= MAX_STEP_CHARS:
            return text(form)
    return min((text(f) for f in forms), key=len) if keep_long else None


def _math_steps(solution: str, answer: str) -> list[str]:
    """The last MAX_MATH_STEPS drafts of the equations up to the last one that yields the answer."""
    chains = _chains(solution)
    if not chains:
        raise NoDraft("no equation in the solution")
    last = None
    for i in range(len(chains) - 1, -1, -1):
        verify = i >= len(chains) - MAX_VERIFIED_STEPS
        if _yields(chains[i], answer, "hard", verify):
            last = i
            break
    if last is None:
        raise NoDraft("no step yields the answer")
    steps = []
    for i, members in enumerate(chains[: last + 1]):
        step = _draft(members, keep_long=i == last)
        if step is not None and step not in steps:
            steps.append(step)
        elif step is not None and i == last:  # the answer's step repeats an earlier one: it goes last
            steps.remove(step)
            steps.append(step)
    return steps[-MAX_MATH_STEPS:]


def style_solution(problem: Problem, dataset: str, style: str) -> str:
    return cot_solution(problem, dataset) if style == "cot" else cod_solution(problem, dataset)
