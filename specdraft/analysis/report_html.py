"""The report's HTML tables (summary, CoD vs CoT, published beside ours), each with how its numbers were made."""

from __future__ import annotations

import html
import math

import numpy as np

from specdraft.analysis.comparison import PAIRED_BOOTSTRAP, verdict
from specdraft.analysis.experiment_summary import MAX_PREDICTED_K
from specdraft.analysis.published import PUBLISHED, PUBLISHED_CONDITIONS, PUBLISHED_K
from specdraft.analysis.report_text import (COUNTING, PAIRING, design_text, primary_text, reduced_precision,
                                            weights_note)

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


def _design(summary, conditions: dict) -> str:
    num_seeds = int(summary.num_seeds.max()) if len(summary) else 0
    repeats = int(summary.repeats.min()) if len(summary) else 0
    concurrency = int(summary.concurrency.max()) if len(summary) else 1
    return f"<p>{html.escape(design_text(num_seeds, repeats, conditions, concurrency))}</p>"


def summary_html(summary, conditions: dict) -> str:
    """summary.csv as the report shows it: our measures, then the seed project's columns."""
    ours = [[f"{_style_cell(r.style)} {r.scenario}", str(r.k), str(r.num_seeds), str(r.num_problems),
             _interval_cell(r.acceptance_rate, r.acceptance_rate_low, r.acceptance_rate_high),
             _fmt(r.acceptance_rate_seed_sd), _fmt(r.mean_acceptance_length),
             _interval_cell(r.speedup, r.speedup_low, r.speedup_high), _fmt(r.speedup_seed_sd), r.speedup_kind,
             _fmt(r.matches_target), _fmt(r.matching_speedup), _fmt(r.truncated_share),
             _fmt(r.target_truncated_share), _fmt(r.predicted_speedup), _fmt(r.predicted_speedup_steps),
             "best" if r.best_k else "", _fmt(r.predicted_best_k), _fmt(r.tokens_per_answer, 4),
             _fmt(r.accuracy), _fmt(r.target_latency_per_correct_s), _fmt(r.latency_per_correct_s)]
            for r in summary.itertuples()]
    seeds = [[f"{_style_cell(r.style)} {r.scenario}", str(r.k), _fmt(r.avg_tokens_generated, 4),
              _fmt(r.acceptance_rate), _fmt(r.accuracy), str(r.total_samples), _fmt(r.peak_vram_gb),
              _fmt(r.tokens_per_second, 4), _fmt(r.avg_ttft_ms), _fmt(r.avg_itl_ms), _fmt(r.total_duration_sec, 4),
              _fmt(r.target_tokens_per_second, 4), _fmt(r.target_avg_ttft_ms), _fmt(r.target_avg_itl_ms)]
             for r in summary.itertuples()]
    note = weights_note(conditions)
    body = (
        "<h2>Summary: one row per experiment and k</h2>" + _design(summary, conditions)
        + f"<p>{html.escape(COUNTING)} Each statistic is the mean over seeds of each seed's value; "
        "sd = its standard deviation between seeds (empty with one seed); [low, high] = 95% two-level bootstrap "
        "interval (seeds, then problems within them). Matching rows = rows whose speculative output equals the "
        "target alone's token for token (share: matches target); truncated = the answer hit max_new_tokens "
        "before its end (speculative run; and the target alone's), so it scores wrong and caps tokens per "
        "answer. Predicted speedups: Leviathan et al.'s E[tokens per step] / (1 + k c) from the per-token "
        "acceptance alpha and the measured c, and the counted form (accepted + steps) / (c proposed + v steps). "
        f"Best k: the fastest measured; predicted best k: the formula's best in 1..{MAX_PREDICTED_K}. Seconds "
        "per correct answer = seconds per answer / accuracy: ∞ where no answer was correct.</p>"
        + (f"<p><b>Weights:</b> {html.escape(note)}</p>" if note else "")
        + _table(["experiment", "k", "seeds", "problems", "acceptance rate [95%]", "sd between seeds",
                  "mean acceptance length", "speedup [95%]", "sd between seeds", "speedup kind", "matches target",
                  "speedup, matching rows", "truncated", "truncated, target alone", "predicted (Leviathan)",
                  "predicted (counted steps)", "best k", "predicted best k", "tokens per answer", "accuracy",
                  "s per correct answer, target alone", "s per correct answer, speculative"], ours,
                 set(range(1, 22)) - {9})
        + "<h2>In the seed project's columns</h2>"
        "<p>The columns the published project reports, under its names, for the speculative run (and the target "
        "alone's throughput and latencies beside them), over every seed's rows. ttft = prompt in to first token "
        "out; itl = mean time between later tokens; peak_vram_gb = GPU memory allocated at peak (GiB), empty on "
        "a CPU.</p>"
        + _table(["experiment", "k", "avg_tokens_generated", "acceptance_rate", "accuracy", "total_samples",
                  "peak_vram_gb", "tokens_per_second", "avg_ttft_ms", "avg_itl_ms", "total_duration_sec",
                  "target tokens_per_second", "target avg_ttft_ms", "target avg_itl_ms"], seeds,
                 set(range(1, 14))))
    return _page("Summary", body)


def _signed(value: float, statistic: str) -> str:
    return "–" if math.isnan(value) else f"{value:+.{1 if statistic == 'tokens_per_answer' else 3}f}"


def _comparison_rows(part) -> list[list[str]]:
    return [[r.scenario, str(r.k), r.statistic.replace("_", " "), str(r.num_seeds), str(r.num_problems),
             _fmt(r.cot), _fmt(r.cod),
             f'{_signed(r.difference, r.statistic)} <span class="ci">[{_signed(r.difference_low, r.statistic)}, '
             f'{_signed(r.difference_high, r.statistic)}]</span>', _fmt(r.p_value), _fmt(r.p_holm),
             f'<span class="yes">{verdict(r, short=True)}</span>' if r.beyond_noise else verdict(r, short=True)]
            for r in part.itertuples()]


def comparison_html(comparison, configured_k: int | None = None) -> str:
    """The CoD-vs-CoT tables: the primary comparison first, then the exploratory ones."""
    header = ["scenario", "k", "statistic", "seeds", "problems per seed", "CoT", "CoD", "CoD - CoT [95%]",
              "p", "p (Holm)", "in words"]
    primary = comparison[comparison.label == "primary"]
    exploratory = comparison[comparison.label == "exploratory"]
    seed_level = (exploratory.resampled != PAIRED_BOOTSTRAP).any() if len(exploratory) else False
    body = ("<h2>Chain of Draft vs Chain of Thought: the primary comparison</h2>"
            f"<p><b>{html.escape(primary_text(comparison, configured_k))}</b></p>"
            f"<p>{html.escape(PAIRING)}</p>"
            + _table(header, _comparison_rows(primary), {1, 3, 4, 5, 6, 8, 9})
            + "<h2>Exploratory comparisons</h2>"
            f"<p>{len(exploratory)} further differences, labelled exploratory: "
            f"{int(exploratory.beyond_noise.sum()) if len(exploratory) else 0} have a Holm-adjusted p <= 0.05 "
            "within their family. They suggest where to look next, they are not the verdict."
            + (" Speedups of a batched run: seeds only, sign-flip test, no interval." if seed_level else "")
            + "</p>" + _table(header, _comparison_rows(exploratory), {1, 3, 4, 5, 6, 8, 9}))
    return _page("CoD vs CoT", body)


def published_html(summary, conditions: dict) -> str:
    """The seed's published figures beside ours at the k nearest its k = 5, under our run's own conditions."""
    rows = []
    for scenario, style, acceptance, speedup, tokens in PUBLISHED:
        ours = summary[(summary["scenario"] == scenario) & (summary["style"] == style)]
        if ours.empty:
            mine = ["–"] * 5
        else:
            row = ours.iloc[(ours["k"] - PUBLISHED_K).abs().argsort().iloc[0]]
            mine = [str(row.k), _interval_cell(row.acceptance_rate, row.acceptance_rate_low,
                                               row.acceptance_rate_high),
                    _interval_cell(row.speedup, row.speedup_low, row.speedup_high), row.speedup_kind,
                    _fmt(row.tokens_per_answer, 4)]
        rows.append([scenario, _style_cell(style), f"{acceptance:.3f}", f"{speedup:.2f}", str(tokens), *mine])
    precision = " Our weights were not float32: see the summary's matching-row speedup." \
        if reduced_precision(conditions) else ""
    body = ("<h2>The published project's table beside ours</h2>"
            f"<p>Published: {PUBLISHED_CONDITIONS}; its speedup is a throughput ratio. Ours: this run's models at "
            "the k nearest 5, means over seeds with 95% two-level bootstrap intervals.</p>"
            + _design(summary, conditions) + (f"<p>{precision}</p>" if precision else "")
            + _table(["scenario", "style", "published acceptance", "published speedup", "published tokens",
                      "our k", "our acceptance [95%]", "our speedup [95%]", "our speedup kind", "our tokens"], rows,
                     {2, 3, 4, 5, 9}))
    return _page("Published vs ours", body)
