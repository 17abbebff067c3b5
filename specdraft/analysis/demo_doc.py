"""docs/demo.md and docs/analysis.md, written from one demo run's own outputs so that neither can drift from it.

    python -m specdraft.analysis.demo_doc <run directory> [--run-commit <commit the run was made from>]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path

from specdraft.analysis.provenance import REPO, provenance, provenance_line

COMMAND = ".venv/bin/snakemake --cores 2 --configfile demo/config.yaml"
DOC_COMMAND = "python -m specdraft.analysis.demo_doc <run directory>"
SHORT_ANSWER_SHARE = 0.25  # answers shorter than this share of the training solutions: the style is not learned


def _num(value: float, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if math.isinf(value):
        return "∞"
    return f"{value:.{digits}g}"


def _interval(value: float, low: float, high: float) -> str:
    return f"{_num(value)} [{_num(low)}, {_num(high)}]" if not math.isnan(low) else _num(value)


def _conditions(run: Path) -> dict:
    from specdraft.analysis.bench_results import read_benchmark, describe_conditions

    experiments = [read_benchmark(csv.parent.name, str(csv), str(csv.with_name("benchmark_run.json")))
                   for csv in sorted(run.glob("results/*/benchmark.csv"))
                   if csv.with_name("benchmark_run.json").exists()]
    return describe_conditions(experiments)


def render(run: Path, record: dict) -> str:
    """The text of docs/demo.md from `run`'s summary, comparison, run records and data stats; `record`: provenance."""
    import pandas as pd

    from specdraft.analysis.comparison import verdict
    from specdraft.analysis.report_text import COUNTING, PAIRING, design_text, primary_text, weights_note

    summary = pd.read_csv(run / "results/summary.csv")
    comparison = pd.read_csv(run / "results/cod_vs_cot.csv")
    stats_path = run / "data/processed/stats.csv"
    stats = pd.read_csv(stats_path) if stats_path.exists() else None
    conditions = _conditions(run)
    design = design_text(int(summary.num_seeds.max()), int(summary.repeats.min()), conditions,
                         int(summary.concurrency.max()))
    lines = [
        "# The demo on a CPU", "", provenance_line(record, DOC_COMMAND), "", "```bash", COMMAND, "```", "",
        "It builds a small BPE tokenizer and two Qwen2-architecture models pretrained on the bundled sample, "
        "then, for each style, scenario and training seed, prepares the data, fine-tunes the target (LoRA), "
        "distils its answers, fine-tunes the draft on them and benchmarks speculative decoding against the "
        f"target alone, side by side in one process, on {int(summary.num_problems.max())} test problems per "
        f"scenario with k = {', '.join(map(str, sorted(summary.k.unique())))}. The figures below are that run's "
        "`results/summary.csv` and `results/cod_vs_cot.csv` (copied to [`docs/report/`](report/) with "
        "[`demo_run.json`](report/demo_run.json), the run's record).", "", design, "", COUNTING, "",
        "## Chain of Draft vs Chain of Thought", "", f"**{primary_text(comparison)}**", "", PAIRING, "",
    ]
    lines += [f"- {r.scenario}, k = {r.k}: {verdict(r)}" for r in comparison[comparison.label == "primary"]
              .itertuples()]
    exploratory = comparison[comparison.label == "exploratory"]
    lines += ["", f"Exploratory ({len(exploratory)} differences, Holm-corrected within their family): "
              f"{int(exploratory.beyond_noise.sum())} beyond the noise; all in `results/cod_vs_cot.csv`.", "",
              "## Summary", "",
              "Means over seeds; sd = between-seed standard deviation; [low, high] = 95% two-level bootstrap "
              "interval (seeds, then problems); truncated = share of answers that hit `max_new_tokens`; matching "
              "= share of rows whose output equals the target alone's, and the speedup over those rows.", "",
              "| experiment | k | seeds | acceptance rate | sd | speedup | sd | speedup, matching rows | matching "
              "| truncated | tokens per answer | accuracy |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in summary.itertuples():
        lines.append(
            f"| {r.experiment} | {r.k} | {r.num_seeds} | "
            f"{_interval(r.acceptance_rate, r.acceptance_rate_low, r.acceptance_rate_high)} | "
            f"{_num(r.acceptance_rate_seed_sd, 2)} | {_interval(r.speedup, r.speedup_low, r.speedup_high)} | "
            f"{_num(r.speedup_seed_sd, 2)} | {_num(r.matching_speedup)} | {_num(r.matches_target)} | "
            f"{_num(r.truncated_share)} | {_num(r.tokens_per_answer, 4)} | {_num(r.accuracy)} |")
    lines += ["", "## What these numbers mean", ""]
    if (summary.accuracy == 0).all():
        lines.append("- **Accuracy is 0 everywhere**: models this small do not solve math problems. So seconds per "
                     "*correct* answer is infinite (`inf` in `summary.csv`).")
    else:
        lines.append(f"- Accuracy ranges from {_num(summary.accuracy.min())} to {_num(summary.accuracy.max())}.")
    lines.append(f"- Truncated answers (hit `max_new_tokens`): {_num(summary.truncated_share.min())} to "
                 f"{_num(summary.truncated_share.max())} of each experiment's rows; they score wrong and cap "
                 "tokens per answer.")
    if (summary.speedup < 1).all():
        lines.append(f"- **Every speedup is below 1** (at most {_num(summary.speedup.max())}): at these sizes a "
                     f"draft token costs {_num(summary.draft_cost.min(), 2)}-{_num(summary.draft_cost.max(), 2)} "
                     "of a target step (c), and Leviathan et al.'s formula predicts at most "
                     f"{_num(summary.predicted_speedup.max())}. The demo shows the stages run, not a speedup.")
    if (summary.matches_target == 1).all():
        lines.append(f"- `matches_target` = 1.0 in all {len(summary)} rows: speculative decoding reproduced the "
                     "target's own output token for token on every problem.")
    note = weights_note(conditions)
    if note:
        lines.append(f"- {note}")
    if stats is not None and "tokens_mean" in stats:
        lines += short_answers_note(summary, stats)
    if stats is not None and "token_ratio_to_cot" in stats:
        train = stats[(stats["style"] == "cod") & (stats["split"] == "train")]
        ratios = ", ".join(f"{r.scenario} {r.token_ratio_to_cot:.2f}" for r in train.itertuples())
        lines.append(f"- The training data itself: CoD solutions are this share of CoT's tokens ({ratios}; "
                     "`data/processed/stats.csv`).")
    lines.append("")
    return "\n".join(lines)


def short_answers_note(summary, stats) -> list[str]:
    """A line when the tuned targets' answers are far shorter than their training solutions (styles then look alike)."""
    trained = summary[summary.trained.astype(bool)]
    train = stats[stats["split"] == "train"].set_index(["style", "scenario"])["tokens_mean"]
    shares = [row.tokens_per_answer / train[(row.style, row.scenario)] for row in trained.itertuples()
              if (row.style, row.scenario) in train.index]
    if not shares or max(shares) >= SHORT_ANSWER_SHARE:
        return []
    return [f"- **The tuned targets answer in {_num(trained.tokens_per_answer.min())}-"
            f"{_num(trained.tokens_per_answer.max())} tokens**, {_num(min(shares), 2)}-{_num(max(shares), 2)} of "
            "their training solutions' mean length: models this small learn the separator and a number before the "
            "reasoning, so both styles decode much the same few tokens. The demo exercises every stage and the "
            "statistics; it cannot show what the style does to acceptance."]


def write_docs(run: Path, docs: Path, run_commit: str | None = None) -> None:
    """docs/demo.md, docs/analysis.md (when the run has the analysis outputs) and docs/report/demo_run.json."""
    from specdraft.analysis.analysis_doc import write_analysis_doc

    record = provenance(run, run_commit)
    (docs / "report").mkdir(parents=True, exist_ok=True)
    (docs / "demo.md").write_text(render(run, record))
    if (run / "results/acceptance_check.csv").exists():
        write_analysis_doc(run, docs / "analysis.md", record, DOC_COMMAND)
    for name in ("summary.csv", "cod_vs_cot.csv"):
        shutil.copyfile(run / "results" / name, docs / "report" / name)
    (docs / "report/demo_run.json").write_text(json.dumps({"command": COMMAND, **record}, indent=1) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path, help="the demo run's directory (holding results/ and data/processed/)")
    parser.add_argument("--run-commit", help="the commit the run was made from, when its directory is no checkout")
    parser.add_argument("--docs", type=Path, default=REPO / "docs", help="where demo.md and analysis.md go")
    args = parser.parse_args(argv)
    write_docs(args.run, args.docs, args.run_commit)


if __name__ == "__main__":
    main()
