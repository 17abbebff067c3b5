"""The summary's plots: grouped bars per scenario, style (colour) and k (shade), the headline latency per
correct answer, CoD minus CoT with its intervals, and predicted against measured speedup."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from specdraft.plumbing.atomic import atomic_path
from specdraft.plumbing.names import EXPERIMENT_STYLES, SCENARIOS
from specdraft.analysis.palette import STYLE_COLOURS, shade

def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def bar_heights(summary, metric: str) -> tuple[list[str], dict[tuple[str, int], list[float]]]:
    """The scenarios on the x axis and, for each (style, k) in plotting order, `metric` per scenario."""
    scenarios = [s for s in SCENARIOS if s in set(summary["scenario"])]
    heights = {}
    for style in EXPERIMENT_STYLES:
        for k in sorted(summary.loc[summary["style"] == style, "k"].unique()):
            group = summary[(summary["style"] == style) & (summary["k"] == k)]
            by_scenario = dict(zip(group["scenario"], group[metric]))
            heights[(style, int(k))] = [float(by_scenario.get(s, math.nan)) for s in scenarios]
    return scenarios, heights


def _grouped_bars(ax, summary, metric: str, interval: bool = False, hatch: str | None = None,
                  label_suffix: str = "") -> None:
    scenarios, heights = bar_heights(summary, metric)
    ks = sorted(summary["k"].unique())
    width = 0.8 / max(1, len(heights))
    if interval:
        _, lows = bar_heights(summary, f"{metric}_low")
        _, highs = bar_heights(summary, f"{metric}_high")
    for i, ((style, k), values) in enumerate(heights.items()):
        xs = [x + (i - (len(heights) - 1) / 2) * width for x in range(len(scenarios))]
        error = None
        if interval:
            error = [[v - lo for v, lo in zip(values, lows[(style, k)])],
                     [hi - v for v, hi in zip(values, highs[(style, k)])]]
        colour = shade(style, ks.index(k), len(ks))
        ax.bar(xs, values, width, yerr=error, capsize=2, color=colour, hatch=hatch,
               edgecolor="white", linewidth=0.5, label=f"{style}, k={k}{label_suffix}",
               error_kw={"elinewidth": 0.8, "ecolor": "#333333"})
    ax.set_xticks(range(len(scenarios)), scenarios)
    ax.set_xlabel("scenario (easy = GSM8K, medium = MATH levels 1-2, hard = MATH levels 3-4)")


def _save(fig, path: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    _pyplot().close(fig)


def _legend(ax, **kwargs) -> None:
    ax.legend(fontsize=7, ncol=kwargs.pop("ncol", 3), frameon=False, **kwargs)


def plot_metric(summary, metric: str, title: str, ylabel: str, path: str) -> None:
    """Grouped bars: one group per scenario, one bar per style (colour) and k (shade), 95% intervals where
    the summary has them; speedups get a line at 1 (the target alone)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.2))
    _grouped_bars(ax, summary, metric, interval=f"{metric}_low" in summary)
    if "speedup" in metric:
        ax.axhline(1.0, color="black", linewidth=1, linestyle="--", label="the target alone (speedup 1)")
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    _legend(ax, loc="upper center", bbox_to_anchor=(0.5, -0.22))
    _save(fig, path)


def plot_latency_per_correct(summary, path: str) -> None:
    """The headline: seconds per answer (top) and seconds per correct answer (bottom), the target alone
    (hatched) next to speculative decoding with each k; no bar, but a note, where no answer was correct."""
    import pandas as pd

    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8.5, 7.5), sharex=True)
    # The target alone once per experiment, as a pseudo-k drawn first and hatched.
    alone = summary.drop_duplicates("experiment").assign(
        k=0, seconds_per_answer=lambda f: f.target_seconds_per_answer,
        latency_per_correct_s=lambda f: f.target_latency_per_correct_s)
    both = pd.concat([alone, summary], ignore_index=True)
    for ax, metric, ylabel in ((top, "seconds_per_answer", "seconds per answer (s)"),
                               (bottom, "latency_per_correct_s", "seconds per correct answer (s)")):
        finite = both.assign(**{metric: both[metric].where(np.isfinite(both[metric]))})
        scenarios, heights = bar_heights(finite, metric)
        _, raw = bar_heights(both, metric)
        ks = sorted(summary["k"].unique())
        width = 0.8 / max(1, len(heights))
        for i, ((style, k), values) in enumerate(heights.items()):
            xs = [x + (i - (len(heights) - 1) / 2) * width for x in range(len(scenarios))]
            colour = shade(style, ks.index(k), len(ks)) if k else STYLE_COLOURS[style]
            label = f"{style}, target alone" if k == 0 else f"{style}, speculative k={k}"
            ax.bar(xs, values, width, color="white" if k == 0 else colour, edgecolor=colour,
                   hatch="////" if k == 0 else None, linewidth=0.8, label=label)
            for x, value in zip(xs, raw[(style, k)]):
                if value == math.inf:
                    ax.text(x, 0, "no correct answer", rotation=90, ha="center", va="bottom", fontsize=6,
                            color="#333333")
        ax.set_ylabel(ylabel)
        if not finite[metric].notna().any():
            ax.set_ylim(0, 1)
            ax.set_yticks([])
            ax.text(0.5, 0.75, "accuracy 0 in every experiment: no correct answer, so no finite time per one",
                    transform=ax.transAxes, ha="center", fontsize=9, color="#333333")
    top.set_title("Latency per correct answer: the target alone vs speculative decoding")
    bottom.set_xticks(range(len(scenarios)), scenarios)
    bottom.set_xlabel("scenario (easy = GSM8K, medium = MATH levels 1-2, hard = MATH levels 3-4)")
    _legend(bottom, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3)
    _save(fig, path)


def plot_cod_vs_cot(comparison, path: str) -> None:
    """CoD minus CoT per scenario with its paired two-level 95% interval, one panel per statistic; k as
    shade; the primary comparison drawn as a star."""
    plt = _pyplot()
    statistics = [("acceptance_rate", "acceptance rate (CoD - CoT)"), ("speedup", "speedup (CoD - CoT)"),
                  ("tokens_per_answer", "tokens per answer (CoD - CoT)")]
    fig, axes = plt.subplots(1, len(statistics), figsize=(11, 3.8))
    ks = sorted(comparison["k"].unique()) if len(comparison) else []
    scenarios = [s for s in SCENARIOS if s in set(comparison["scenario"])]
    for ax, (statistic, ylabel) in zip(axes, statistics):
        rows = comparison[comparison.statistic == statistic]
        width = 0.8 / max(1, len(ks))
        for i, k in enumerate(ks):
            part = rows[rows.k == k].set_index("scenario").reindex(scenarios)
            xs = [x + (i - (len(ks) - 1) / 2) * width for x in range(len(scenarios))]
            primary = (part.label == "primary").any()
            ax.errorbar(xs, part.difference, yerr=[part.difference - part.difference_low,
                                                   part.difference_high - part.difference],
                        fmt="*" if primary else "o", markersize=9 if primary else 6,
                        color=shade("cod", ks.index(k), len(ks)), capsize=3,
                        label=f"k={k} (primary)" if primary else f"k={k}")
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(scenarios)), scenarios)
        ax.set_xlabel("scenario")
        ax.set_ylabel(ylabel)
        ax.set_title(ylabel.split(" (")[0], fontsize=10)
    if comparison.empty:
        axes[1].text(0.5, 0.5, "no scenario has both a CoT and a CoD experiment", ha="center",
                     transform=axes[1].transAxes)
    else:
        _legend(axes[0], loc="best", ncol=1)
    fig.suptitle("Chain of Draft minus Chain of Thought: paired 95% bootstrap intervals over seeds, then "
                 "problems (star: the primary comparison)", fontsize=10)
    _save(fig, path)


def plot_predicted_speedup(summary, path: str) -> None:
    """Measured speedup against the two predictions, one point per experiment and k; the diagonal is exact."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 5))
    ks = sorted(summary["k"].unique())
    from matplotlib.lines import Line2D

    for style in EXPERIMENT_STYLES:
        for k in ks:
            part = summary[(summary["style"] == style) & (summary["k"] == k)]
            colour = shade(style, ks.index(k), len(ks))
            ax.scatter(part.predicted_speedup, part.speedup, marker="o", color=colour)
            ax.scatter(part.predicted_speedup_steps, part.speedup, marker="x", color=colour)
    handles = [Line2D([], [], color=STYLE_COLOURS[s], marker="s", linestyle="", label=s)
               for s in EXPERIMENT_STYLES if s in set(summary["style"])]
    handles += [Line2D([], [], color="#444444", marker="o", linestyle="", label="predicted: Leviathan (alpha, c)"),
                Line2D([], [], color="#444444", marker="x", linestyle="", label="predicted: counted steps (c, v)"),
                Line2D([], [], color="black", linewidth=0.8, label="measured = predicted"),
                Line2D([], [], color="black", linestyle="--", linewidth=0.8, label="speedup 1 (the target alone)")]
    values = summary[["speedup", "predicted_speedup", "predicted_speedup_steps"]].to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    low, high = (min(values.min(), 1.0) * 0.9, max(values.max(), 1.0) * 1.1) if len(values) else (0, 2)
    ax.plot([low, high], [low, high], color="black", linewidth=0.8)
    ax.axhline(1.0, color="black", linestyle="--", linewidth=0.8)
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_xlabel("predicted speedup (x the target alone's tokens per second)")
    ax.set_ylabel("measured speedup (x the target alone's tokens per second)")
    ax.set_title("Predicted vs measured speedup (one point per experiment and k; lighter = smaller k)",
                 fontsize=9)
    ax.legend(handles=handles, fontsize=7, frameon=False, loc="upper left")
    _save(fig, path)


