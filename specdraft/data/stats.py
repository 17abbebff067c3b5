"""How far the two styles differ before any model is trained: tokens, steps and words per solution."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from specdraft.data.answers import SEPARATOR
from specdraft.plumbing.atomic import atomic_path
from specdraft.plumbing.jsonl import read_jsonl
from specdraft.plumbing.names import EXPERIMENT_STYLES, SCENARIOS

log = logging.getLogger(__name__)

STATS_COLUMNS = [
    "style", "scenario", "split", "examples", "tokens_mean", "tokens_median", "tokens_p90", "tokens_p99", "steps_mean",
    "words_per_step", "token_ratio_to_cot",
]
# A step ends at a line break, a CoD draft separator or the end of a sentence.
_STEP = re.compile(r"\n+|;\s*|(?<=[.!?])\s+(?=[A-Z$\\])")


def solution_steps(solution: str) -> list[str]:
    """The reasoning steps of a solution (the final `#### answer` excluded)."""
    body = solution.rsplit(SEPARATOR, 1)[0]
    return [s.strip() for s in _STEP.split(body) if s and s.strip()]


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def solution_stats(solutions: list[str], tokenizer) -> dict[str, float]:
    """Token counts (p90, p99: what a max_new_tokens cap must cover), steps and words per step over `solutions`."""
    tokens = token_counts(solutions, tokenizer)
    steps = [solution_steps(s) for s in solutions]
    num_steps = sum(len(s) for s in steps)
    num_words = sum(len(step.split()) for s in steps for step in s)
    return {
        "examples": len(solutions),
        "tokens_mean": sum(tokens) / len(tokens),
        "tokens_median": _quantile(tokens, 0.5),
        "tokens_p90": _quantile(tokens, 0.9),
        "tokens_p99": _quantile(tokens, 0.99),
        "steps_mean": num_steps / len(solutions),
        "words_per_step": num_words / max(1, num_steps),
    }


def token_counts(solutions: list[str], tokenizer) -> list[int]:
    return [len(ids) for ids in tokenizer(solutions, add_special_tokens=False)["input_ids"]]


def dataset_stats(processed: dict[tuple[str, str, str], str], tokenizer):
    """One row per (style, scenario, split) over the records with a solution; `token_ratio_to_cot` compares tokens
    with CoT's on the problems solved in both."""
    import pandas as pd

    rows, tokens_by_id = [], {}
    for (style, scenario, split), path in processed.items():
        records = [r for r in read_jsonl(path, required=("id", "solution")) if r["solution"] is not None]
        if not records:
            raise ValueError(f"{path}: no record has a solution")
        solutions = [r["solution"] for r in records]
        tokens_by_id[style, scenario, split] = dict(zip((r["id"] for r in records), token_counts(solutions, tokenizer)))
        rows.append({"style": style, "scenario": scenario, "split": split, **solution_stats(solutions, tokenizer)})
    frame = pd.DataFrame(rows)

    def ratio(style: str, scenario: str, split: str) -> float:
        cot = tokens_by_id.get(("cot", scenario, split))
        if cot is None:
            return float("nan")
        mine = tokens_by_id[style, scenario, split]
        common = [i for i in mine if i in cot]
        return sum(mine[i] for i in common) / sum(cot[i] for i in common) if common else float("nan")

    frame["token_ratio_to_cot"] = [ratio(r.style, r.scenario, r.split) for r in frame.itertuples()]
    return frame[STATS_COLUMNS]


def plot_tokens(stats, path: str) -> None:
    """Mean tokens per training solution, by scenario and style."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = stats[stats["split"] == "train"]
    scenarios = [s for s in SCENARIOS if s in set(train.scenario)]
    from specdraft.analysis.palette import STYLE_COLOURS

    styles = [s for s in EXPERIMENT_STYLES if s in set(train["style"])]  # cot, cod: the order and colours of every plot
    fig, ax = plt.subplots(figsize=(6, 3.5))
    width = 0.8 / len(styles)
    for i, style in enumerate(styles):
        values = [train[(train.scenario == s) & (train["style"] == style)].tokens_mean.sum() for s in scenarios]
        ax.bar([x + i * width for x in range(len(scenarios))], values, width, label=style,
               color=STYLE_COLOURS[style])
    ax.set_xticks([x + width * (len(styles) - 1) / 2 for x in range(len(scenarios))], scenarios)
    ax.set_title("Training solutions: tokens per solution, by style")
    ax.set_xlabel("scenario")
    ax.set_ylabel("tokens per solution (mean)")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def write_stats(processed: dict[tuple[str, str, str], str], tokenizer_name: str, stats_path: str,
                plot_path: str) -> None:
    """Write stats.csv and its plot, counting tokens with the tokenizer of the configured target."""
    from specdraft.models.loading import load_tokenizer

    stats = dataset_stats(processed, load_tokenizer(tokenizer_name))
    with atomic_path(stats_path) as tmp:
        stats.to_csv(tmp, index=False, float_format="%.3f")
    Path(plot_path).parent.mkdir(parents=True, exist_ok=True)
    plot_tokens(stats, plot_path)
    log.info("\n%s", stats.to_string(index=False))
