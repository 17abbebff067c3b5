"""The summary stage: one row per experiment and k, and the report's plots."""

from __future__ import annotations

import logging
from pathlib import Path

from specdraft.atomic import atomic_path

log = logging.getLogger(__name__)

SUMMARY_COLUMNS = [
    "experiment", "style", "scenario", "trained", "k", "num_problems", "acceptance_rate",
    "mean_acceptance_length", "median_speedup", "tokens_per_answer", "accuracy", "matches_target",
]


def experiment_parts(name: str) -> tuple[str, str]:
    """`cod_hard` -> ('cod', 'hard'); `untrained_easy` -> ('untrained', 'easy')."""
    style, scenario = name.split("_", 1)
    return style, scenario


def summarize(benchmarks: dict[str, str]):
    """A DataFrame with one row per experiment and k from `{experiment: benchmark.csv}`.

    acceptance_rate and mean_acceptance_length pool the counts over all problems (vLLM's definitions);
    speedup is the median over problems of target seconds / speculative seconds.
    """
    import pandas as pd

    rows = []
    for experiment, path in benchmarks.items():
        style, scenario = experiment_parts(experiment)
        frame = pd.read_csv(path)
        for k, group in frame.groupby("k"):
            rows.append({
                "experiment": experiment, "style": style, "scenario": scenario,
                "trained": style != "untrained", "k": int(k), "num_problems": len(group),
                "acceptance_rate": group.num_accepted.sum() / max(1, group.num_proposed.sum()),
                "mean_acceptance_length": 1 + group.num_accepted.sum() / max(1, group.num_steps.sum()),
                "median_speedup": group.speedup.median(),
                "tokens_per_answer": group.num_new_tokens.mean(),
                "accuracy": group.correct.mean(),
                "matches_target": group.matches_target.mean(),
            })
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def bar_heights(summary, metric: str) -> tuple[list[str], dict[tuple[str, int], list[float]]]:
    """The scenarios on the x axis and, for each (style, k), its `metric` per scenario (NaN where absent)."""
    scenarios = [s for s in ("easy", "medium", "hard") if s in set(summary["scenario"])]
    heights = {}
    for (style, k), group in summary.groupby(["style", "k"]):
        by_scenario = dict(zip(group["scenario"], group[metric]))
        heights[(style, int(k))] = [float(by_scenario.get(s, float("nan"))) for s in scenarios]
    return scenarios, heights


def plot(summary, metric: str, ylabel: str, path: str) -> None:
    """Grouped bars: one group per scenario, one bar per experiment style and k."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios, heights = bar_heights(summary, metric)
    width = 0.8 / max(1, len(heights))
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, ((style, k), values) in enumerate(sorted(heights.items())):
        ax.bar([x + i * width for x in range(len(scenarios))], values, width, label=f"{style}, k={k}")
    ax.set_xticks([x + width * (len(heights) - 1) / 2 for x in range(len(scenarios))], scenarios)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


PLOTS = {
    "acceptance_rate": "acceptance rate",
    "median_speedup": "median speedup over the target alone",
    "tokens_per_answer": "tokens per answer",
}


def write_summary(benchmarks: dict[str, str], summary_path: str, plot_paths: dict[str, str]) -> None:
    """Write summary.csv and one plot per metric in `plot_paths` ({metric: png path})."""
    summary = summarize(benchmarks)
    with atomic_path(summary_path) as tmp:
        summary.to_csv(tmp, index=False, float_format="%.4f")
    for metric, path in plot_paths.items():
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        plot(summary, metric, PLOTS[metric], path)
    log.info("summary of %d experiments -> %s", len(benchmarks), summary_path)
