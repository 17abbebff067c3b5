"""Which rule writes a workflow artifact, and errors for a corrupt one that say how to rebuild it."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

_EXPERIMENT = r"results/[^/]+/(?:seed\d+/)?"
# (path pattern, rule): the workflow's outputs (Snakefile's map), matched anywhere in a path.
PRODUCERS = (
    (_EXPERIMENT + r"checkpoints/target(/|$)", "train_target"),
    (_EXPERIMENT + r"checkpoints/draft(/|$)", "train_draft"),
    (_EXPERIMENT + r"target_adapter(/|$)", "train_target"),
    (_EXPERIMENT + r"draft_adapter(/|$)", "train_draft"),
    (_EXPERIMENT + r"target_merged(/|$)", "merge_target"),
    (_EXPERIMENT + r"draft_merged(/|$)", "merge_draft"),
    (_EXPERIMENT + r"distilled\.jsonl", "distill"),
    (_EXPERIMENT + r"target_outputs\.jsonl", "acceptance"),
    (r"results/untrained_[^/]+/(?:seed\d+/)?benchmark\.csv", "baseline"),
    (_EXPERIMENT + r"benchmark\.csv", "bench"),
    (r"results/random_base/(target|draft)(/|$)", "random_base"),
    (r"results/base/(target|draft)(/|$)", "base_models"),
    (r"data/processed/[^/]+/(train|test)\.jsonl", "prepare"),
)


def producing_rule(path: str | os.PathLike) -> str | None:
    """The rule whose output `path` is (or lies in), or None for a file the workflow does not write."""
    text = Path(path).as_posix()
    for pattern, rule in PRODUCERS:
        if re.search(r"(^|/)" + pattern, text):
            return rule
    return None


def rebuild_hint(path: str | os.PathLike) -> str:
    rule = producing_rule(path)
    if rule is None:
        return ""
    return f"written by rule {rule}; rebuild it with `snakemake -R {rule}` (and the targets you ran)"


class ArtifactError(ValueError):
    """An input file that cannot be read as what it should be; the message names it and the rule that writes it."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path, self.problem, self.rule = str(path), problem, producing_rule(path)
        hint = rebuild_hint(path)
        super().__init__(f"{self.path}: {problem}" + (f" — {hint}" if hint else ""))


def check_safetensors(path: str | os.PathLike) -> None:
    """Raise ArtifactError when `path` is missing, truncated or corrupt."""
    from safetensors import SafetensorError, safe_open

    if not Path(path).is_file():
        raise ArtifactError(path, "missing")
    try:
        with safe_open(str(path), "pt") as f:
            f.keys()
    except (SafetensorError, OSError) as error:
        raise ArtifactError(path, f"not a readable safetensors file ({error})") from None


def check_json(path: str | os.PathLike) -> dict:
    """The JSON object in `path`, or ArtifactError naming it."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ArtifactError(path, "missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ArtifactError(path, f"not valid JSON ({error})") from None


def check_adapter(directory: str | os.PathLike) -> None:
    """A PEFT adapter directory: a readable adapter_config.json and adapter_model.safetensors."""
    directory = Path(directory)
    if not directory.is_dir():  # a hub adapter id: PEFT fetches and checks it
        return
    check_json(directory / "adapter_config.json")
    check_safetensors(directory / "adapter_model.safetensors")


def check_checkpoint(directory: str | os.PathLike) -> None:
    """A Trainer checkpoint to resume from: its state JSON files and every safetensors file in it."""
    directory = Path(directory)
    for path in sorted(directory.glob("*.json")):
        check_json(path)
    for path in sorted(directory.glob("*.safetensors")):
        check_safetensors(path)
