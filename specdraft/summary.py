"""The summary stage: one row per experiment and k, the CoD-vs-CoT comparison, the report's plots and tables."""

from __future__ import annotations

import html
import logging
import math
import zlib
from pathlib import Path

import numpy as np

from specdraft.atomic import atomic_path
from specdraft.cost_model import leviathan_speedup
from specdraft.palette import STYLE_COLOURS, shade

log = logging.getLogger(__name__)

STYLES = ("cot", "cod", "untrained")
SCENARIOS = ("easy", "medium", "hard")
# One colour per style in every plot (specdraft.palette); k is the shade.
STYLE_NAMES = {"cot": "Chain of Thought", "cod": "Chain of Draft", "untrained": "untrained pair"}
MAX_PREDICTED_K = 16  # the range searched for the k the cost model predicts best

SUMMARY_COLUMNS = [
    "experiment", "style", "scenario", "trained", "k", "num_problems",
    "acceptance_rate", "acceptance_rate_low", "acceptance_rate_high", "mean_acceptance_length", "alpha",
    "speedup", "speedup_low", "speedup_high", "median_speedup",
    "draft_cost", "verification_cost", "predicted_speedup", "predicted_speedup_steps", "best_k", "predicted_best_k",
    "tokens_per_answer", "accuracy", "target_accuracy", "matches_target",
    "seconds_per_answer", "target_seconds_per_answer", "latency_per_correct_s", "target_latency_per_correct_s",
    "target_tokens_per_second", "target_avg_ttft_ms", "target_avg_itl_ms",
    # The seed project's columns, under its names (its acceptance_rate and accuracy are ours above).
    "avg_tokens_generated", "total_samples", "peak_vram_gb", "tokens_per_second", "avg_ttft_ms", "avg_itl_ms",
    "total_duration_sec",
]

# The published project's table (its README): Qwen3-14B target, Qwen3-0.6B draft, one A40, vLLM, k = 5,
# greedy, 16 concurrent requests. `speedup` is its throughput ratio to the target alone.
PUBLISHED = [
    # scenario, style, acceptance_rate, speedup, tokens_per_answer
    ("easy", "cot", 0.827, 1.41, 114), ("medium", "cot", 0.850, 1.50, 226), ("hard", "cot", 0.834, 1.55, 311),
    ("easy", "cod", 0.882, 1.53, 96), ("medium", "cod", 0.890, 1.56, 165), ("hard", "cod", 0.880, 1.64, 304),
]
PUBLISHED_CONDITIONS = "Qwen3-14B target, Qwen3-0.6B draft, one A40, vLLM, k = 5, greedy, 16 concurrent requests"
PUBLISHED_K = 5


def experiment_parts(name: str) -> tuple[str, str]:
    """`cod_hard` -> ('cod', 'hard'); `untrained_easy` -> ('untrained', 'easy')."""
    style, scenario = name.split("_", 1)
    return style, scenario


# Statistics over one experiment's problems at one k, from column arrays indexed [..., problem], so that the
# same function gives the point estimate (all problems) and the bootstrap replicates ([resamples, problem]).
def _acceptance(c: dict) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return c["num_accepted"].sum(-1) / c["num_proposed"].sum(-1)


def _speedup(c: dict) -> np.ndarray:
    """Pooled throughput ratio: (speculative tokens / seconds) / (target tokens / seconds)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((c["num_new_tokens"].sum(-1) / c["speculative_seconds"].sum(-1))
                / (c["target_num_new_tokens"].sum(-1) / c["target_seconds"].sum(-1)))


def _tokens(c: dict) -> np.ndarray:
    return c["num_new_tokens"].mean(-1)


STATISTICS = {"acceptance_rate": _acceptance, "speedup": _speedup, "tokens_per_answer": _tokens}
COLUMNS_USED = ("num_accepted", "num_proposed", "num_new_tokens", "speculative_seconds", "target_num_new_tokens",
                "target_seconds")


def _columns(group) -> dict:
    return {name: group[name].to_numpy(dtype=float) for name in COLUMNS_USED}


def _replicates(columns: dict, resamples: int, rng: np.random.Generator) -> dict:
    """The columns resampled with replacement over problems: each [resamples, problems]."""
    n = len(next(iter(columns.values())))
    idx = rng.integers(0, n, size=(resamples, n))
    return {name: values[idx] for name, values in columns.items()}


def _interval(values: np.ndarray) -> tuple[float, float]:
    """The central 95% of bootstrap replicates (percentile interval), NaN replicates left out."""
    values = values[~np.isnan(values)]
    if not len(values):
        return math.nan, math.nan
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def _rng(seed: int, *names: object) -> np.random.Generator:
    """A generator seeded by the config's seed and the names of what it resamples, whatever the order."""
    return np.random.default_rng([seed, *(zlib.crc32(str(n).encode()) for n in names)])


def per_answer_latency(seconds_per_answer: float, accuracy: float) -> float:
    """Seconds per correct answer = seconds per answer / accuracy; inf when no answer is correct (no time,
    however long, bought a correct answer), NaN when nothing was timed."""
    if math.isnan(seconds_per_answer) or math.isnan(accuracy):
        return math.nan
    return seconds_per_answer / accuracy if accuracy > 0 else math.inf


def summarize(benchmarks: dict[str, str], *, resamples: int = 1000, seed: int = 0):
    """A DataFrame with one row per experiment and k from `{experiment: benchmark.csv}`.

    acceptance_rate and mean_acceptance_length pool the counts over all problems (vLLM's definitions);
    speedup is the pooled throughput ratio, speculative tokens per second over the target's; `*_low`/`*_high`
    bound a 95% bootstrap interval over problems. The cost model takes each experiment and k's median c and
    verification cost and its pooled per-token acceptance probability alpha.
    """
    import pandas as pd

    rows = []
    for experiment, path in benchmarks.items():
        style, scenario = experiment_parts(experiment)
        frame = pd.read_csv(path)
        for k, group in frame.groupby("k"):
            k = int(k)
            columns = _columns(group)
            boot = _replicates(columns, resamples, _rng(seed, experiment, k))
            accepted, rejected = group.num_accepted.sum(), group.num_rejected_steps.sum()
            alpha = accepted / (accepted + rejected) if accepted + rejected else math.nan
            c, v = group.draft_cost.median(), group.verification_cost.median()
            accuracy, target_accuracy = group.correct.mean(), group.target_correct.mean()
            seconds, target_seconds = group.speculative_seconds.mean(), group.target_seconds.mean()
            rows.append({
                "experiment": experiment, "style": style, "scenario": scenario, "trained": style != "untrained",
                "k": k, "num_problems": len(group),
                "acceptance_rate": float(_acceptance(columns)),
                **dict(zip(("acceptance_rate_low", "acceptance_rate_high"), _interval(_acceptance(boot)))),
                "mean_acceptance_length": 1 + accepted / max(1, group.num_steps.sum()), "alpha": alpha,
                "speedup": float(_speedup(columns)),
                **dict(zip(("speedup_low", "speedup_high"), _interval(_speedup(boot)))),
                "median_speedup": group.speedup.median(),
                "draft_cost": c, "verification_cost": v,
                "predicted_speedup": leviathan_speedup(alpha, k, c) if not math.isnan(alpha + c) else math.nan,
                "predicted_speedup_steps": (accepted + group.num_steps.sum())
                / (c * group.num_proposed.sum() + v * group.num_steps.sum()),
                "tokens_per_answer": group.num_new_tokens.mean(), "accuracy": accuracy,
                "target_accuracy": target_accuracy, "matches_target": group.matches_target.mean(),
                "seconds_per_answer": seconds, "target_seconds_per_answer": target_seconds,
                "latency_per_correct_s": per_answer_latency(seconds, accuracy),
                "target_latency_per_correct_s": per_answer_latency(target_seconds, target_accuracy),
                "target_tokens_per_second": group.target_num_new_tokens.sum() / group.target_seconds.sum(),
                "target_avg_ttft_ms": group.target_ttft_ms.mean(), "target_avg_itl_ms": group.target_itl_ms.mean(),
                "avg_tokens_generated": group.num_new_tokens.mean(), "total_samples": len(group),
                "peak_vram_gb": group.peak_memory_gib.max(),
                "tokens_per_second": group.num_new_tokens.sum() / group.speculative_seconds.sum(),
                "avg_ttft_ms": group.ttft_ms.mean(), "avg_itl_ms": group.itl_ms.mean(),
                "total_duration_sec": group.speculative_seconds.sum(),
            })
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    summary["best_k"] = False
    summary["predicted_best_k"] = pd.array([pd.NA] * len(summary), dtype="Int64")
    for _, group in summary.groupby("experiment"):
        if group.speedup.notna().any():
            summary.loc[group.speedup.idxmax(), "best_k"] = True
        summary.loc[group.index, "predicted_best_k"] = predicted_best_k(group)
    return summary


def predicted_best_k(group) -> int | None:
    """The k in 1..MAX_PREDICTED_K the paper's formula ranks first, from one experiment's rows: alpha pooled
    over its k's (their mean) and its median c."""
    alpha, c = group.alpha.mean(), group.draft_cost.median()
    if math.isnan(alpha) or math.isnan(c):
        return None
    return max(range(1, MAX_PREDICTED_K + 1), key=lambda k: leviathan_speedup(alpha, k, c))


def compare_styles(benchmarks: dict[str, str], *, resamples: int = 1000, seed: int = 0):
    """CoD minus CoT per scenario, k and statistic, with a 95% bootstrap interval of the difference.

    The two experiments' problems are resampled independently (a conservative interval when both styles
    answer the same problems). `larger_than_noise` says whether the interval excludes 0.
    """
    import pandas as pd

    frames = {name: pd.read_csv(path) for name, path in benchmarks.items()}
    rows = []
    for scenario in SCENARIOS:
        cot, cod = frames.get(f"cot_{scenario}"), frames.get(f"cod_{scenario}")
        if cot is None or cod is None:
            continue
        for k in sorted(set(cot.k) & set(cod.k)):
            columns = {style: _columns(frame[frame.k == k]) for style, frame in (("cot", cot), ("cod", cod))}
            boot = {style: _replicates(c, resamples, _rng(seed, "compare", style, scenario, k))
                    for style, c in columns.items()}
            for statistic, fn in STATISTICS.items():
                cot_value, cod_value = float(fn(columns["cot"])), float(fn(columns["cod"]))
                low, high = _interval(fn(boot["cod"]) - fn(boot["cot"]))
                rows.append({
                    "scenario": scenario, "k": int(k), "statistic": statistic, "cot": cot_value, "cod": cod_value,
                    "difference": cod_value - cot_value, "difference_low": low, "difference_high": high,
                    "larger_than_noise": bool(low > 0 or high < 0),
                })
    return pd.DataFrame(rows, columns=["scenario", "k", "statistic", "cot", "cod", "difference", "difference_low",
                                       "difference_high", "larger_than_noise"])


def verdict(row, short: bool = False) -> str:
    """One sentence on a CoD-minus-CoT difference and whether its interval excludes 0 (`short`: the
    judgement alone, for a table that shows the numbers beside it)."""
    name = {"acceptance_rate": "acceptance rate", "speedup": "speedup", "tokens_per_answer": "tokens per answer"}
    what = name[row.statistic]
    if math.isnan(row.difference_low):
        return f"{what}: no interval (too few problems)"
    noise = ("larger than the noise (the interval excludes 0)" if row.larger_than_noise
             else "within the noise (the interval includes 0)")
    if short:
        return noise
    direction = "the same as" if row.difference == 0 else (
        f"{'higher' if row.difference > 0 else 'lower'} by {abs(row.difference):.3g} than")
    return (f"CoD's {what} is {direction} CoT's, 95% interval [{row.difference_low:.3g}, "
            f"{row.difference_high:.3g}]: {noise}.")


# ---- plots ---------------------------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def bar_heights(summary, metric: str) -> tuple[list[str], dict[tuple[str, int], list[float]]]:
    """The scenarios on the x axis and, for each (style, k) in plotting order, `metric` per scenario."""
    scenarios = [s for s in SCENARIOS if s in set(summary["scenario"])]
    heights = {}
    for style in STYLES:
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
    """CoD minus CoT per scenario with its 95% interval, one panel per statistic; k as shade."""
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
            ax.errorbar(xs, part.difference, yerr=[part.difference - part.difference_low,
                                                   part.difference_high - part.difference],
                        fmt="o", color=shade("cod", ks.index(k), len(ks)), capsize=3, label=f"k={k}")
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
    fig.suptitle("Chain of Draft minus Chain of Thought, with 95% bootstrap intervals "
                 "(an interval crossing 0 is within the noise)", fontsize=10)
    _save(fig, path)


def plot_predicted_speedup(summary, path: str) -> None:
    """Measured speedup against the two predictions, one point per experiment and k; the diagonal is exact."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 5))
    ks = sorted(summary["k"].unique())
    from matplotlib.lines import Line2D

    for style in STYLES:
        for k in ks:
            part = summary[(summary["style"] == style) & (summary["k"] == k)]
            colour = shade(style, ks.index(k), len(ks))
            ax.scatter(part.predicted_speedup, part.speedup, marker="o", color=colour)
            ax.scatter(part.predicted_speedup_steps, part.speedup, marker="x", color=colour)
    handles = [Line2D([], [], color=STYLE_COLOURS[s], marker="s", linestyle="", label=s)
               for s in STYLES if s in set(summary["style"])]
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


# ---- HTML tables ---------------------------------------------------------------------------------------------

_CSS = """body{font-family:system-ui,sans-serif;font-size:13px;margin:16px;color:#222}
h2{font-size:16px;margin:18px 0 6px}p{max-width:60em;line-height:1.4}
table{border-collapse:collapse;margin:6px 0 14px}th,td{padding:3px 8px;border-bottom:1px solid #ddd}
th{background:#f2f2f2;text-align:left;vertical-align:bottom}td{white-space:nowrap}
td.n{text-align:right;font-variant-numeric:tabular-nums}.ci{color:#777;font-size:11px}
.cot{color:#0072B2;font-weight:600}.cod{color:#D55E00;font-weight:600}.untrained{color:#666;font-weight:600}
.yes{font-weight:600}"""


def _fmt(value, digits: int = 3) -> str:
    import pandas as pd

    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, float) and math.isinf(value):
        return "∞" if value > 0 else "-∞"
    if isinstance(value, (float, np.floating)):
        return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"
    return html.escape(str(value))


def _interval_cell(value, low, high) -> str:
    return f'{_fmt(value)} <span class="ci">[{_fmt(low)}, {_fmt(high)}]</span>'


def _table(header: list[str], rows: list[list[str]], numeric: set[int] = frozenset()) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>{body}</body></html>")


def _style_cell(style: str) -> str:
    return f'<span class="{style}">{style}</span>'


def summary_html(summary) -> str:
    """summary.csv as the report shows it: our measures, then the seed project's columns."""
    ours = [[f"{_style_cell(r.style)} {r.scenario}", str(r.k), str(r.num_problems),
             _interval_cell(r.acceptance_rate, r.acceptance_rate_low, r.acceptance_rate_high),
             _fmt(r.mean_acceptance_length), _interval_cell(r.speedup, r.speedup_low, r.speedup_high),
             _fmt(r.predicted_speedup), _fmt(r.predicted_speedup_steps),
             "best" if r.best_k else "", _fmt(r.predicted_best_k), _fmt(r.tokens_per_answer, 4),
             _fmt(r.accuracy), _fmt(r.target_seconds_per_answer), _fmt(r.seconds_per_answer),
             _fmt(r.target_latency_per_correct_s), _fmt(r.latency_per_correct_s), _fmt(r.matches_target)]
            for r in summary.itertuples()]
    seeds = [[f"{_style_cell(r.style)} {r.scenario}", str(r.k), _fmt(r.avg_tokens_generated, 4),
              _fmt(r.acceptance_rate), _fmt(r.accuracy), str(r.total_samples), _fmt(r.peak_vram_gb),
              _fmt(r.tokens_per_second, 4), _fmt(r.avg_ttft_ms), _fmt(r.avg_itl_ms), _fmt(r.total_duration_sec, 4),
              _fmt(r.target_tokens_per_second, 4), _fmt(r.target_avg_ttft_ms), _fmt(r.target_avg_itl_ms)]
             for r in summary.itertuples()]
    body = (
        "<h2>Summary: one row per experiment and k</h2>"
        "<p>Acceptance rate = accepted / proposed draft tokens, pooled over the test problems; speedup = "
        "speculative tokens per second / the target alone's, measured side by side in one process; "
        "[low, high] = 95% bootstrap interval over problems. Predicted speedups: Leviathan et al.'s "
        "E[tokens per step] / (1 + k c) from the per-token acceptance alpha and the measured c (one draft "
        "token's time over one target step), and the counted form (accepted + steps) / (c proposed + v steps) "
        "with the measured verification cost v. Best k: the k with the highest measured speedup; predicted best "
        f"k: the formula's best in 1..{MAX_PREDICTED_K}. Seconds per correct answer = seconds per answer / "
        "accuracy: ∞ where no answer was correct.</p>"
        + _table(["experiment", "k", "problems", "acceptance rate [95%]", "mean acceptance length",
                  "speedup [95%]", "predicted (Leviathan)", "predicted (counted steps)", "best k",
                  "predicted best k", "tokens per answer", "accuracy", "s per answer, target alone",
                  "s per answer, speculative", "s per correct answer, target alone",
                  "s per correct answer, speculative", "matches target"], ours, set(range(1, 17)))
        + "<h2>In the seed project's columns</h2>"
        "<p>The columns the published project reports, under its names, for the speculative run (and the target "
        "alone's throughput and latencies beside them). ttft = prompt in to first token out; itl = mean time "
        "between later tokens; peak_vram_gb = GPU memory allocated at peak (GiB), empty on a CPU.</p>"
        + _table(["experiment", "k", "avg_tokens_generated", "acceptance_rate", "accuracy", "total_samples",
                  "peak_vram_gb", "tokens_per_second", "avg_ttft_ms", "avg_itl_ms", "total_duration_sec",
                  "target tokens_per_second", "target avg_ttft_ms", "target avg_itl_ms"], seeds,
                 set(range(1, 14))))
    return _page("Summary", body)


def comparison_html(comparison) -> str:
    """The CoD-vs-CoT table, each difference with its interval and a sentence on the noise."""
    def signed(value: float, statistic: str) -> str:
        return "–" if math.isnan(value) else f"{value:+.{1 if statistic == 'tokens_per_answer' else 3}f}"

    rows = [[r.scenario, str(r.k), r.statistic.replace("_", " "), _fmt(r.cot), _fmt(r.cod),
             f'{signed(r.difference, r.statistic)} <span class="ci">[{signed(r.difference_low, r.statistic)}, '
             f'{signed(r.difference_high, r.statistic)}]</span>',
             f'<span class="yes">{verdict(r, short=True)}</span>' if r.larger_than_noise
             else verdict(r, short=True)]
            for r in comparison.itertuples()]
    significant = int(comparison.larger_than_noise.sum()) if len(comparison) else 0
    body = ("<h2>Chain of Draft vs Chain of Thought, per scenario and k</h2>"
            f"<p>{significant} of {len(comparison)} differences are larger than the noise (their 95% bootstrap "
            "interval excludes 0; each style's problems resampled independently). Acceptance rate and speedup "
            "are pooled over the problems as in the summary; tokens per answer is the mean.</p>"
            + _table(["scenario", "k", "statistic", "CoT", "CoD", "CoD - CoT [95%]", "in words"], rows, {1, 3, 4}))
    return _page("CoD vs CoT", body)


def published_html(summary) -> str:
    """The seed's published figures beside ours at the k nearest its k = 5."""
    rows = []
    for scenario, style, acceptance, speedup, tokens in PUBLISHED:
        ours = summary[(summary["scenario"] == scenario) & (summary["style"] == style)]
        if ours.empty:
            mine = ["–"] * 4
        else:
            row = ours.iloc[(ours["k"] - PUBLISHED_K).abs().argsort().iloc[0]]
            mine = [str(row.k), _interval_cell(row.acceptance_rate, row.acceptance_rate_low,
                                               row.acceptance_rate_high),
                    _interval_cell(row.speedup, row.speedup_low, row.speedup_high), _fmt(row.tokens_per_answer, 4)]
        rows.append([scenario, _style_cell(style), f"{acceptance:.3f}", f"{speedup:.2f}", str(tokens), *mine])
    body = ("<h2>The published project's table beside ours</h2>"
            f"<p>Published: {PUBLISHED_CONDITIONS}. Ours: this run's models and machine at the k nearest 5, "
            "batch 1 (one request at a time), with 95% bootstrap intervals. Both speedups are throughput ratios "
            "to the target alone.</p>"
            + _table(["scenario", "style", "published acceptance", "published speedup", "published tokens",
                      "our k", "our acceptance [95%]", "our speedup [95%]", "our tokens"], rows, {2, 3, 4, 5, 8}))
    return _page("Published vs ours", body)


# ---- the stage -----------------------------------------------------------------------------------------------

PLOTS = {
    "latency_per_correct": None,  # the headline, drawn by its own function
    "cod_vs_cot": None,
    "speedup": ("Speedup over the target alone (throughput ratio, 95% intervals)",
                "speculative / target-alone tokens per second"),
    "acceptance_rate": ("Draft tokens accepted (95% intervals)", "acceptance rate (accepted / proposed)"),
    "tokens_per_answer": ("Tokens per answer", "generated tokens per answer (mean)"),
    "predicted_speedup": None,
}
TABLES = {"summary_table": summary_html, "published_table": published_html}


def write_summary(benchmarks: dict[str, str], outputs: dict[str, str], *, resamples: int = 1000,
                  seed: int = 0) -> None:
    """Write summary.csv (`outputs['summary']`), cod_vs_cot.csv and its HTML (`comparison`,
    `comparison_table`), the HTML tables in TABLES and the plots in PLOTS, each to the path `outputs` names."""
    summary = summarize(benchmarks, resamples=resamples, seed=seed)
    comparison = compare_styles(benchmarks, resamples=resamples, seed=seed)
    with atomic_path(outputs["summary"]) as tmp:
        summary.to_csv(tmp, index=False, float_format="%.6g")
    with atomic_path(outputs["comparison"]) as tmp:
        comparison.to_csv(tmp, index=False, float_format="%.6g")
    pages = {"comparison_table": comparison_html(comparison),
             **{name: fn(summary) for name, fn in TABLES.items()}}
    for name, page in pages.items():
        Path(outputs[name]).parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(outputs[name]) as tmp:
            Path(tmp).write_text(page)
    for name, spec in PLOTS.items():
        if name not in outputs:
            continue
        if name == "latency_per_correct":
            plot_latency_per_correct(summary, outputs[name])
        elif name == "cod_vs_cot":
            plot_cod_vs_cot(comparison, outputs[name])
        elif name == "predicted_speedup":
            plot_predicted_speedup(summary, outputs[name])
        else:
            plot_metric(summary, name, *spec, outputs[name])
    log.info("summary of %d experiments -> %s", len(benchmarks), outputs["summary"])
