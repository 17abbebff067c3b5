"""The summary stage: every experiment's benchmark in, summary.csv, cod_vs_cot.csv, report tables and plots out."""

from __future__ import annotations

import logging
from pathlib import Path

from specdraft.analysis import plots
from specdraft.analysis.bench_results import describe_conditions, read_benchmark
from specdraft.analysis.comparison import compare_styles
from specdraft.analysis.experiment_summary import summarize
from specdraft.analysis.report_html import comparison_html, published_html, summary_html
from specdraft.plumbing.atomic import atomic_path

log = logging.getLogger(__name__)

# Output name -> (title, y label) of a grouped-bar plot of that summary column.
BAR_PLOTS = {
    "speedup": ("Speedup over the target alone (means over seeds, 95% intervals)",
                "speculative / target-alone tokens per second"),
    "acceptance_rate": ("Draft tokens accepted (means over seeds, 95% intervals)",
                        "acceptance rate (accepted / proposed)"),
    "tokens_per_answer": ("Tokens per answer (means over seeds)", "generated tokens per answer (mean)"),
}
PLOTS = ("latency_per_correct", "cod_vs_cot", *BAR_PLOTS, "predicted_speedup")


def _write_text(path: str, text: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def write_summary(benchmarks: dict[str, str], runs: dict[str, str], outputs: dict[str, str], *, resamples: int,
                  seed: int, primary_statistic: str, primary_k: int) -> None:
    """Write the tables and the plots in PLOTS that `outputs` names; `benchmarks` and `runs` map each experiment
    to its benchmark.csv and benchmark_run.json; the primary comparison is `primary_statistic` at `primary_k`."""
    experiments = [read_benchmark(name, path, runs.get(name)) for name, path in benchmarks.items()]
    conditions = describe_conditions(experiments)
    summary = summarize(experiments, resamples=resamples, seed=seed)
    comparison = compare_styles(experiments, resamples=resamples, seed=seed, primary_statistic=primary_statistic,
                                primary_k_configured=primary_k)
    with atomic_path(outputs["summary"]) as tmp:
        summary.to_csv(tmp, index=False, float_format="%.6g")
    with atomic_path(outputs["comparison"]) as tmp:
        comparison.to_csv(tmp, index=False, float_format="%.6g")
    _write_text(outputs["comparison_table"], comparison_html(comparison, primary_k))
    _write_text(outputs["summary_table"], summary_html(summary, conditions))
    _write_text(outputs["published_table"], published_html(summary, conditions))
    for name in PLOTS:
        if name not in outputs:
            continue
        if name == "latency_per_correct":
            plots.plot_latency_per_correct(summary, outputs[name])
        elif name == "cod_vs_cot":
            plots.plot_cod_vs_cot(comparison, outputs[name])
        elif name == "predicted_speedup":
            plots.plot_predicted_speedup(summary, outputs[name])
        else:
            plots.plot_metric(summary, name, *BAR_PLOTS[name], outputs[name])
    log.info("summary of %d experiments -> %s", len(benchmarks), outputs["summary"])
