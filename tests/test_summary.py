import csv
import math

import pytest

from specdraft.bench import BenchRow, write_rows
from specdraft.cost_model import leviathan_speedup
from specdraft.summary import (PLOTS, PUBLISHED, bar_heights, compare_styles, per_answer_latency, predicted_best_k,
                               summarize, write_summary)


def row(id, k, proposed, accepted, steps, target_s, spec_s, tokens, correct, target_tokens=None, rejected=1):
    target_tokens = tokens if target_tokens is None else target_tokens
    return BenchRow(
        id=id, k=k, num_new_tokens=tokens, target_num_new_tokens=target_tokens, num_proposed=proposed,
        num_accepted=accepted, num_steps=steps, acceptance_rate=accepted / proposed,
        mean_acceptance_length=1 + accepted / steps, accepted_per_position="", target_seconds=target_s,
        speculative_seconds=spec_s, target_tokens_per_s=target_tokens / target_s,
        speculative_tokens_per_s=tokens / spec_s, speedup=(tokens / spec_s) / (target_tokens / target_s),
        ttft_ms=5.0, itl_ms=1.0, target_ttft_ms=4.0, target_itl_ms=2.0, draft_token_ms=0.2, verification_ms=2.4,
        draft_cost=0.1, verification_cost=1.2, num_rejected_steps=rejected, alpha=accepted / (accepted + rejected),
        predicted_speedup=1.0, predicted_speedup_steps=1.0, peak_memory_gib=math.nan, answer="1", reference="1",
        correct=correct, target_correct=correct, matches_target=True)


@pytest.fixture
def benchmarks(tmp_path):
    write_rows(tmp_path / "cod.csv", [row("a", 2, 10, 8, 5, 1.0, 0.5, 15, True),
                                      row("b", 2, 30, 6, 15, 3.0, 2.0, 25, False, target_tokens=20),
                                      row("a", 4, 20, 10, 5, 1.0, 0.4, 15, True)])
    write_rows(tmp_path / "untrained.csv", [row("a", 2, 10, 2, 5, 1.0, 1.0, 40, False)])
    return {"cod_hard": str(tmp_path / "cod.csv"), "untrained_easy": str(tmp_path / "untrained.csv")}


def test_summary_pools_counts_and_speedup_is_a_throughput_ratio(benchmarks):
    summary = summarize(benchmarks, resamples=200).set_index(["experiment", "k"])
    cod2 = summary.loc[("cod_hard", 2)]
    assert cod2.acceptance_rate == pytest.approx(14 / 40)  # pooled, not the mean of 0.8 and 0.2
    assert cod2.mean_acceptance_length == pytest.approx(1 + 14 / 20)
    # (40 tokens / 2.5 s) / (35 tokens / 4 s): tokens per second, not a ratio of seconds.
    assert cod2.speedup == pytest.approx((40 / 2.5) / (35 / 4.0))
    assert cod2.median_speedup == pytest.approx((2.0 + (25 / 2.0) / (20 / 3.0)) / 2)
    assert cod2.tokens_per_answer == 20 and cod2.accuracy == 0.5 and cod2.num_problems == 2
    assert cod2.alpha == pytest.approx(14 / 16)  # 14 accepted, one rejected step per problem
    # The seed's columns, under its names.
    assert cod2.avg_tokens_generated == 20 and cod2.total_samples == 2
    assert cod2.tokens_per_second == pytest.approx(40 / 2.5) and cod2.total_duration_sec == pytest.approx(2.5)
    assert cod2.avg_ttft_ms == 5.0 and cod2.avg_itl_ms == 1.0 and math.isnan(cod2.peak_vram_gb)
    assert summary.loc[("untrained_easy", 2)].trained == False  # noqa: E712 (numpy bool)
    assert summary.loc[("cod_hard", 4)].acceptance_rate == 0.5


def test_bootstrap_intervals_hold_the_estimate_and_repeat_with_the_seed(benchmarks):
    first = summarize(benchmarks, resamples=300, seed=3)
    again = summarize(benchmarks, resamples=300, seed=3)
    cod2 = first.set_index(["experiment", "k"]).loc[("cod_hard", 2)]
    assert cod2.acceptance_rate_low <= cod2.acceptance_rate <= cod2.acceptance_rate_high
    assert cod2.acceptance_rate_low == pytest.approx(0.2) and cod2.acceptance_rate_high == pytest.approx(0.8)
    # Resampling {a, b}, {a, a}, {b, b}: the pooled ratio (1.83) lies below both problems' own (2 and 1.875).
    assert cod2.speedup_low == pytest.approx(cod2.speedup) and cod2.speedup_high == pytest.approx(2.0)
    assert first.equals(again)
    single = first.set_index(["experiment", "k"]).loc[("untrained_easy", 2)]  # one problem: no spread
    assert single.acceptance_rate_low == single.acceptance_rate_high == pytest.approx(0.2)


def test_the_seed_fixes_the_resamples(tmp_path):
    write_rows(tmp_path / "cot.csv", [row(f"p{i}", 2, 10, i % 7, 5, 1.0, 0.5 + i / 20, 20, False) for i in range(30)])
    benchmarks = {"cot_easy": str(tmp_path / "cot.csv")}
    first, again, other = (summarize(benchmarks, resamples=200, seed=s) for s in (0, 0, 1))
    assert first.equals(again) and first.acceptance_rate_low[0] != other.acceptance_rate_low[0]


def test_latency_per_correct_answer_is_infinite_without_a_correct_answer(benchmarks):
    assert per_answer_latency(3.0, 0.5) == 6.0
    assert per_answer_latency(3.0, 0.0) == math.inf and math.isnan(per_answer_latency(math.nan, 0.5))
    summary = summarize(benchmarks, resamples=100).set_index(["experiment", "k"])
    assert summary.loc[("cod_hard", 2)].latency_per_correct_s == pytest.approx(1.25 / 0.5)
    assert summary.loc[("cod_hard", 2)].target_latency_per_correct_s == pytest.approx(2.0 / 0.5)
    assert summary.loc[("untrained_easy", 2)].latency_per_correct_s == math.inf


def test_best_k_measured_and_predicted(benchmarks):
    summary = summarize(benchmarks, resamples=100).set_index(["experiment", "k"])
    assert summary.loc[("cod_hard", 4)].best_k and not summary.loc[("cod_hard", 2)].best_k
    import pandas as pd

    sure = pd.DataFrame({"alpha": [0.95], "draft_cost": [0.01]})
    never = pd.DataFrame({"alpha": [0.0], "draft_cost": [0.01]})
    assert predicted_best_k(never) == 1
    best = predicted_best_k(sure)
    assert best > 8 and all(leviathan_speedup(0.95, best, 0.01) >= leviathan_speedup(0.95, k, 0.01)
                            for k in range(1, 17))


def test_cod_vs_cot_difference_says_whether_it_beats_the_noise(tmp_path):
    # CoD accepts 9 of 10 on every problem, CoT 1 of 10: far outside the noise. Speedups overlap.
    cot = [row(f"p{i}", 2, 10, 1, 5, 1.0, 1.0 + 0.3 * (i % 2), 20, False) for i in range(20)]
    cod = [row(f"p{i}", 2, 10, 9, 5, 1.0, 1.0 + 0.3 * ((i + 1) % 2), 20, False) for i in range(20)]
    write_rows(tmp_path / "cot.csv", cot)
    write_rows(tmp_path / "cod.csv", cod)
    comparison = compare_styles({"cot_easy": str(tmp_path / "cot.csv"), "cod_easy": str(tmp_path / "cod.csv")},
                                resamples=500).set_index("statistic")
    acceptance, speedup = comparison.loc["acceptance_rate"], comparison.loc["speedup"]
    assert acceptance.difference == pytest.approx(0.8) and acceptance.larger_than_noise
    assert speedup.difference_low < 0 < speedup.difference_high and not speedup.larger_than_noise


def test_plot_bars_carry_the_summary_values(benchmarks):
    scenarios, heights = bar_heights(summarize(benchmarks, resamples=100), "acceptance_rate")
    assert scenarios == ["easy", "hard"]
    assert list(heights) == [("cod", 2), ("cod", 4), ("untrained", 2)]  # cot, cod, untrained; k ascending
    assert heights[("cod", 2)][1] == pytest.approx(14 / 40) and math.isnan(heights[("cod", 2)][0])
    assert heights[("untrained", 2)][0] == pytest.approx(0.2)


def test_write_summary_writes_csvs_tables_and_plots(benchmarks, tmp_path):
    outputs = {name: str(tmp_path / f"{name}.png") for name in PLOTS}
    outputs |= {"summary": str(tmp_path / "summary.csv"), "comparison": str(tmp_path / "cod_vs_cot.csv"),
                "comparison_table": str(tmp_path / "cmp.html"), "summary_table": str(tmp_path / "summary.html"),
                "published_table": str(tmp_path / "published.html")}
    write_summary(benchmarks, outputs, resamples=100)
    rows = list(csv.DictReader(open(outputs["summary"])))
    assert len(rows) == 3 and rows[2]["latency_per_correct_s"] == "inf"
    assert all(open(outputs[name], "rb").read(8) == b"\x89PNG\r\n\x1a\n" for name in PLOTS)
    page = open(outputs["summary_table"]).read()
    assert page.startswith("<!DOCTYPE html>") and "<table>" in page and "<td class=\"n\">∞</td>" in page
    published = open(outputs["published_table"]).read()
    assert all(f"{acceptance:.3f}" in published for _, _, acceptance, _, _ in PUBLISHED)


def test_demo_doc_is_written_from_the_run_outputs(benchmarks, tmp_path):
    from specdraft.demo_doc import render

    results = tmp_path / "run/results"
    results.mkdir(parents=True)
    write_summary(benchmarks, {"summary": str(results / "summary.csv"), "comparison": str(results / "cod_vs_cot.csv"),
                               "comparison_table": str(tmp_path / "c.html"), "summary_table": str(tmp_path / "s.html"),
                               "published_table": str(tmp_path / "p.html")}, resamples=100)
    page = render(tmp_path / "run")
    rows = [line for line in page.splitlines() if line.startswith("| cod_hard") or line.startswith("| untrained")]
    assert len(rows) == 3 and "| cod_hard | 2 | 0.35 [0.2, 0.8] |" in rows[0]
    assert "Accuracy is 0 everywhere" not in page  # cod_hard answers half its problems
    assert "Every speedup is below 1" not in page and "matches_target` = 1.0 in all 3 rows" in page


def test_report_screenshots_find_the_results_the_page_displays():
    import importlib.util

    from tests.conftest import REPO

    spec = importlib.util.spec_from_file_location("report_screenshots", REPO / "scripts/report_screenshots.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    page = ('<script>\n    var results = {"results/summary.csv": {}, "results/report/summary.html": {}, '
            '"results/plots/speedup.png": {}};\n</script>')
    assert module.result_paths(page) == ["results/report/summary.html", "results/plots/speedup.png"]
    with pytest.raises(ValueError, match="Snakemake"):
        module.result_paths("<html></html>")
