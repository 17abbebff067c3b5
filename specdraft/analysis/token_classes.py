"""Token classes of an answer, for acceptance by class: which kinds of tokens a draft gets right.

A token's class is read from its own decoded text (byte-level BPE tokens such as Qwen's `Ġ3` decode to ` 3`),
stripped of surrounding whitespace, in this order:

- `end`: a special token (eos, `<|im_end|>`);
- `tail`: any token from the one where the answer's first `####` starts to the end of the answer;
- `whitespace`: spaces and newlines only;
- `latex`: a LaTeX command or markup: text holding a backslash (`\\frac`, `$\\`), letters continuing a command
  a previous token began (`fr`, `ac` after `\\`), or only the characters `{ } _` (not `$`: it delimits math
  in MATH but means dollars in GSM8K, so it is `other`);
- `digit`: a number: a digit, then digits, `.` or `,` (Qwen's tokenizer splits numbers into single digits);
- `operator`: only arithmetic or comparison characters, `=` included: `+ - * / = < > ^ × ÷ − ± · ≤ ≥ ≠`;
- `word`: letters only;
- `other`: anything else: punctuation, tokens mixing kinds (`3x`, `).`), and ids that decode to nothing.
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
    """The class of a token's text outside the tail (see the module's docstring); never `end` or `tail`.

    in_command: the text before this token ends inside a LaTeX command (`\\fr`), so letters continue it.
    """
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
