import csv
import math

import pytest

from specdraft.benchmark import BenchRow, write_rows
from specdraft.summary import bar_heights, summarize, write_summary


def row(id, k, proposed, accepted, steps, target_s, spec_s, tokens, correct):
    return BenchRow(id=id, k=k, num_new_tokens=tokens, num_proposed=proposed, num_accepted=accepted, num_steps=steps,
                    acceptance_rate=accepted / proposed, mean_acceptance_length=1 + accepted / steps,
                    accepted_per_position="",
                    target_seconds=target_s, speculative_seconds=spec_s, speedup=target_s / spec_s, answer="1",
                    reference="1", correct=correct, matches_target=True)


@pytest.fixture
def benchmarks(tmp_path):
    write_rows(tmp_path / "cod.csv", [row("a", 2, 10, 8, 5, 1.0, 0.5, 15, True),
                                      row("b", 2, 30, 6, 15, 3.0, 2.0, 25, False),
                                      row("a", 4, 20, 10, 5, 1.0, 0.4, 15, True)])
    write_rows(tmp_path / "untrained.csv", [row("a", 2, 10, 2, 5, 1.0, 1.0, 40, False)])
    return {"cod_hard": str(tmp_path / "cod.csv"), "untrained_easy": str(tmp_path / "untrained.csv")}


def test_summary_pools_counts_and_takes_the_median_speedup(benchmarks):
    summary = summarize(benchmarks).set_index(["experiment", "k"])
    cod2 = summary.loc[("cod_hard", 2)]
    assert cod2.acceptance_rate == pytest.approx(14 / 40)  # pooled, not the mean of 0.8 and 0.2
    assert cod2.mean_acceptance_length == pytest.approx(1 + 14 / 20)
    assert cod2.median_speedup == pytest.approx((2.0 + 1.5) / 2)
    assert cod2.tokens_per_answer == 20 and cod2.accuracy == 0.5 and cod2.num_problems == 2
    assert summary.loc[("untrained_easy", 2)].trained == False  # noqa: E712 (numpy bool)
    assert summary.loc[("cod_hard", 4)].acceptance_rate == 0.5


def test_plot_bars_carry_the_summary_values(benchmarks):
    scenarios, heights = bar_heights(summarize(benchmarks), "acceptance_rate")
    assert scenarios == ["easy", "hard"]
    assert heights[("cod", 2)][1] == pytest.approx(14 / 40) and math.isnan(heights[("cod", 2)][0])
    assert heights[("untrained", 2)][0] == pytest.approx(0.2)


def test_write_summary_writes_csv_and_plots(benchmarks, tmp_path):
    plots = {m: str(tmp_path / f"{m}.png") for m in ("acceptance_rate", "median_speedup", "tokens_per_answer")}
    write_summary(benchmarks, str(tmp_path / "summary.csv"), plots)
    rows = list(csv.DictReader(open(tmp_path / "summary.csv")))
    assert len(rows) == 3
    assert all(open(p, "rb").read(8) == b"\x89PNG\r\n\x1a\n" for p in plots.values())
