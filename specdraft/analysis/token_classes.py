"""Token classes of an answer, for acceptance by class: which kinds of tokens a draft gets right.

A token's class comes from its decoded text, stripped, first match winning: `end` (a special token), `tail`
(from the answer's first `####` on), `whitespace`, `latex` (a backslash, letters continuing an open command, or
only `{ } _`; not `$`, which means dollars in GSM8K), `digit`, `operator` (`=` included), `word`, `other`.
"""

from __future__ import annotations

import re

from specdraft.data.answers import SEPARATOR

CLASSES = ("digit", "operator", "latex", "word", "whitespace", "tail", "end", "other")

_NUMBER = re.compile(r"[0-9][0-9.,]*")
_OPERATORS = frozenset("+-*/=<>^×÷−±·≤≥≠")
_LATEX_MARKUP = frozenset("{}_")
_OPEN_COMMAND = re.compile(r"\\[A-Za-z]*$")  # text ending inside a command: a backslash, then letters


def token_texts(tokenizer, ids: list[int]) -> list[str]:
    """Each token's own decoded text (a byte sequence cut inside a UTF-8 character decodes to U+FFFD)."""
    return [tokenizer.decode([i], clean_up_tokenization_spaces=False) for i in ids]


def text_class(text: str, in_command: bool = False) -> str:
    """The class of a token's text outside the tail; `in_command`: the text before it ends inside a command."""
    if not text:
        return "other"
    s = text.strip()
    if not s:
        return "whitespace"
    if "\\" in s or (in_command and text[0].isalpha()) or set(s) <= _LATEX_MARKUP:
        return "latex"
    if _NUMBER.fullmatch(s):
        return "digit"
    if set(s) <= _OPERATORS:
        return "operator"
    if s.isalpha():
        return "word"
    return "other"


def classify_texts(texts: list[str], special: list[bool]) -> list[str]:
    """The class of every token of one answer, given each token's text and whether it is a special token."""
    if len(texts) != len(special):
        raise ValueError(f"{len(texts)} texts but {len(special)} special flags")
    # The tail starts at the token holding the first character of the first separator.
    ends, offset = [], 0
    for text in texts:
        offset += len(text)
        ends.append(offset)
    tail_start = "".join(texts).find(SEPARATOR)
    classes, in_command = [], False
    for i, text in enumerate(texts):
        if special[i]:
            classes.append("end")
        elif tail_start >= 0 and ends[i] > tail_start:
            classes.append("tail")
        else:
            classes.append(text_class(text, in_command))
        in_command = bool(_OPEN_COMMAND.search(text)) or (in_command and text.isalpha())
    return classes


def classify_tokens(tokenizer, ids: list[int]) -> list[str]:
    """The class of every token of one answer (token ids up to and including eos)."""
    special_ids = set(tokenizer.all_special_ids)
    return classify_texts(token_texts(tokenizer, ids), [i in special_ids for i in ids])
