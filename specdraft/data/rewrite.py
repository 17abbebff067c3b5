"""Chain of Draft written by a teacher model: each CoT solution rewritten with the paper's instruction and
few-shot examples, through the project's generation engine; a rewrite is kept only if its answer verifies."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from specdraft.data.answers import SEPARATOR
from specdraft.data.styles import solution_rejection

log = logging.getLogger(__name__)

INSTRUCTION = (
    "Rewrite the solution as a Chain of Draft: think step by step, but only keep a minimum draft for each "
    "thinking step, with 5 words at most. Separate the steps with '; '. Return the answer at the end of the "
    "response after a separator ####."
)

# (problem, Chain of Thought solution, Chain of Draft rewrite). The first is the Chain of Draft paper's
# example; the others are GSM8K train #0 and MATH train/algebra/3 (MIT).
FEW_SHOT = [
    ("Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops. How many lollipops "
     "did Jason give to Denny?",
     "Jason started with 20 lollipops and has 12 left, so he gave away 20 - 12 = 8 lollipops.\n#### 8",
     "20 - x = 12; x = 20 - 12 = 8 #### 8"),
    ("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many "
     "clips did Natalia sell altogether in April and May?",
     "Natalia sold 48/2 = 24 clips in May.\nNatalia sold 48+24 = 72 clips altogether in April and May.\n#### 72",
     "48/2=24; 48+24=72 #### 72"),
    ("If $A=2+i$, $O=-4$, $P=-i$, and $S=2+4i$, find $A-O+P+S$.",
     "Adding real parts and imaginary parts separately, we have "
     "$(2-(-4)+0+2)+(1+0-1+4)i=\\boxed{8+4i}$.\n#### 8+4i",
     "real: 2+4+0+2=8; imaginary: 1+0-1+4=4 #### 8+4i"),
]


def _request(problem: str, solution: str) -> str:
    return f"Question: {problem}\n\nSolution:\n{solution}"


def rewrite_messages(problem: str, cot_solution: str,
                     few_shot: Sequence[tuple[str, str, str]] = FEW_SHOT) -> list[dict[str, str]]:
    """The teacher's prompt: instruction, few-shot rewrites, then the solution to rewrite."""
    messages = [{"role": "system", "content": INSTRUCTION}]
    for shot_problem, shot_cot, shot_cod in few_shot:
        messages += [{"role": "user", "content": _request(shot_problem, shot_cot)},
                     {"role": "assistant", "content": shot_cod}]
    return messages + [{"role": "user", "content": _request(problem, cot_solution)}]


@dataclass(frozen=True)
class Rewrite:
    solution: str | None  # None when rejected
    raw: str


def verify_rewrite(text: str, reference: str, scenario: str) -> str | None:
    """The rewrite ending in `#### <reference>`, or None when its answer differs or it has no draft."""
    if solution_rejection(text, reference, scenario) is not None:
        return None
    return f"{text.rsplit(SEPARATOR, 1)[0].strip()} {SEPARATOR} {reference}"


def rewrite_solutions(model, tokenizer, items: list[tuple[str, str, str]], scenario: str, *, max_new_tokens: int,
                      batch_size: int, seed: int, enable_thinking: bool,
                      few_shot: Sequence[tuple[str, str, str]] = FEW_SHOT) -> list[Rewrite]:
    """Rewrite each (problem, CoT solution, reference answer) greedily with `model` (Hugging Face or engine)."""
    from specdraft.decoding.generation import generate_batched

    prompts = [rewrite_messages(problem, cot, few_shot) for problem, cot, _ in items]
    generated = generate_batched(model, tokenizer, prompts, max_new_tokens=max_new_tokens, temperature=0.0,
                                 batch_size=batch_size, seed=seed, enable_thinking=enable_thinking)
    rewrites = []
    for (_, _, reference), ids in zip(items, generated):
        raw = tokenizer.decode(ids, skip_special_tokens=True).strip()
        rewrites.append(Rewrite(verify_rewrite(raw, reference, scenario), raw))
    rejected = sum(r.solution is None for r in rewrites)
    log.info("llm rewriter: %d of %d rewrites rejected (answer missing or wrong)", rejected, len(rewrites))
    return rewrites
