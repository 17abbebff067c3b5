"""The two reasoning styles' chat messages; the system prompts are Xu et al. 2025's ("Chain of Draft")."""

from __future__ import annotations
from specdraft.plumbing.names import STYLES


SYSTEM_PROMPTS = {
    "cot": (
        "Think step by step to answer the following question. "
        "Return the answer at the end of the response after a separator ####."
    ),
    "cod": (
        "Think step by step, but only keep a minimum draft for each thinking step, with 5 words at most. "
        "Return the answer at the end of the response after a separator ####."
    ),
}


def check_style(style: str) -> str:
    if style not in STYLES:
        raise ValueError(f"style must be one of {list(STYLES)}, got {style!r}")
    return style


def prompt_messages(problem: str, style: str) -> list[dict[str, str]]:
    """The system and user turns that ask for a solution to `problem` in `style`."""
    return [
        {"role": "system", "content": SYSTEM_PROMPTS[check_style(style)]},
        {"role": "user", "content": problem},
    ]


def chat_messages(problem: str, style: str, solution: str) -> list[dict[str, str]]:
    return prompt_messages(problem, style) + [{"role": "assistant", "content": solution}]
