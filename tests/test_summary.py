import csv
import json
import math

import pytest
from bench_tables import batched_metrics, bench_row, write_benchmark, write_run

from specdraft.analysis.bench_results import BenchmarkFileError, read_benchmark
from specdraft.analysis.comparison import PAIRED_BOOTSTRAP, compare_styles, primary_k
from specdraft.analysis.experiment_summary import per_answer_latency, predicted_best_k, summarize
from specdraft.analysis.plots import bar_heights
from specdraft.analysis.published import PUBLISHED
from specdraft.decoding.cost_model import leviathan_speedup
from specdraft.stages.summary import PLOTS, write_summary

row = bench_row


def experiments(paths: dict[str, str], runs: dict[str, str] | None = None):
    return [read_benchmark(name, path, (runs or {}).get(name)) for name, path in paths.items()]


@pytest.fixture
def benchmarks(tmp_path):
    cod = write_benchmark(tmp_path / "cod.csv", [row("a", 2, 10, 8, 5, 1.0, 0.5, 15, True),
                                                 row("b", 2, 30, 6, 15, 3.0, 2.0, 25, False, target_tokens=20),
                                                 row("a", 4, 20, 10, 5, 1.0, 0.4, 15, True)])
    untrained = write_benchmark(tmp_path / "untrained.csv", [row("a", 2, 10, 2, 5, 1.0, 1.0, 40, False)])
    return {"cod_hard": cod, "untrained_easy": untrained}


def test_summary_pools_counts_and_speedup_is_a_throughput_ratio(benchmarks):
    summary = summarize(experiments(benchmarks), resamples=200, seed=0).set_index(["experiment", "k"])
    cod2 = summary.loc[("cod_hard", 2)]
    assert cod2.acceptance_rate == pytest.approx(14 / 40)  # pooled, not the mean of 0.8 and 0.2
    assert cod2.mean_acceptance_length == pytest.approx(1 + 14 / 20)
    # (40 tokens / 2.5 s) / (35 tokens / 4 s): tokens per second, not a ratio of seconds.
    assert cod2.speedup == pytest.approx((40 / 2.5) / (35 / 4.0)) and cod2.speedup_kind == "per-request"
    assert cod2.median_speedup == pytest.approx((2.0 + (25 / 2.0) / (20 / 3.0)) / 2)
    assert cod2.tokens_per_answer == 20 and cod2.accuracy == 0.5 and cod2.num_problems == 2
    assert cod2.alpha == pytest.approx(14 / 16)  # 14 accepted, one rejected step per problem
    assert cod2.num_seeds == 1 and math.isnan(cod2.acceptance_rate_seed_sd) and cod2.repeats == 3
    assert cod2.avg_tokens_generated == 20 and cod2.total_samples == 2
    assert cod2.tokens_per_second == pytest.approx(40 / 2.5) and cod2.total_duration_sec == pytest.approx(2.5)
    assert cod2.avg_ttft_ms == 5.0 and cod2.avg_itl_ms == 1.0 and math.isnan(cod2.peak_vram_gb)
    assert summary.loc[("untrained_easy", 2)].trained == False  # noqa: E712 (numpy bool)
    assert summary.loc[("cod_hard", 4)].acceptance_rate == 0.5


def test_bootstrap_intervals_hold_the_estimate_and_repeat_with_the_seed(benchmarks):
    first = summarize(experiments(benchmarks), resamples=300, seed=3)
    again = summarize(experiments(benchmarks), resamples=300, seed=3)
    cod2 = first.set_index(["experiment", "k"]).loc[("cod_hard", 2)]
    assert cod2.acceptance_rate_low == pytest.approx(0.2) and cod2.acceptance_rate_high == pytest.approx(0.8)
    # Resampling {a, b}, {a, a}, {b, b}: the pooled ratio (1.83) lies below both problems' own (2 and 1.875).
    assert cod2.speedup_low == pytest.approx(cod2.speedup) and cod2.speedup_high == pytest.approx(2.0)
    assert first.equals(again)


def test_seeds_give_the_mean_and_the_spread_between_them(tmp_path):
    rows = [row(p, 2, 10, accepted, 5, 1.0, 0.5, 20, False, seed=seed)
            for seed, accepted in ((0, 2), (1, 6)) for p in ("a", "b", "c")]
    summary = summarize(experiments({"cot_easy": write_benchmark(tmp_path / "b.csv", rows)}), resamples=300, seed=0)
    r = summary.iloc[0]
    assert r.num_seeds == 2 and r.num_problems == 3 and r.total_samples == 6
    assert r.acceptance_rate == pytest.approx(0.4) and r.acceptance_rate_seed_sd == pytest.approx(0.4 / 2 ** 0.5)
    # No spread within a seed: the interval is the seed level alone, {0.2, 0.4, 0.6}.
    assert r.acceptance_rate_low == pytest.approx(0.2) and r.acceptance_rate_high == pytest.approx(0.6)


def test_truncated_share_and_matching_row_speedup(tmp_path):
    rows = [row("a", 2, 10, 5, 5, 1.0, 0.5, 20, False, truncated=True, target_truncated=True),  # speedup 2
            row("b", 2, 10, 5, 5, 1.0, 1.0, 20, False, matches=False),  # speedup 1, output differs
            row("c", 2, 10, 5, 5, 1.0, 0.8, 20, False, matches=False, truncated=True),
            row("d", 2, 10, 5, 5, 2.0, 1.0, 20, False)]  # speedup 2
    summary = summarize(experiments({"cod_easy": write_benchmark(tmp_path / "b.csv", rows)}), resamples=100, seed=0)
    r = summary.iloc[0]
    assert r.truncated_share == 0.5 and r.target_truncated_share == 0.25
    assert r.matches_target == 0.5
    assert r.matching_speedup == pytest.approx((40 / 1.5) / (40 / 3.0))  # rows a and d, pooled
    assert r.speedup == pytest.approx((80 / 3.3) / (80 / 5.0))  # all rows


def test_concurrency_speedup_is_the_runs_throughput_ratio(tmp_path):
    rows = [row(p, k, 10, 5, 5, 1.0, 0.5, 20, False, seed=s) for s in (0, 1) for p in ("a", "b") for k in (2, 4)]
    csv_path = write_benchmark(tmp_path / "b.csv", rows)
    runs = write_run(tmp_path / "run.json", [0, 1], concurrency=16, device="NVIDIA H200",
                     throughput={0: batched_metrics(100.0, {2: 150.0, 4: 120.0}),
                                 1: batched_metrics(110.0, {2: 143.0, 4: 121.0})})
    summary = summarize(experiments({"cot_easy": csv_path}, {"cot_easy": runs}), resamples=100, seed=0)
    k2 = summary.set_index("k").loc[2]
    assert k2.speedup_kind == "throughput" and k2.concurrency == 16
    assert k2.speedup == pytest.approx((150 / 100 + 143 / 110) / 2)  # not the rows' per-request ratio of 2
    assert k2.request_speedup == pytest.approx(2.0) and math.isnan(k2.speedup_low)
    assert summary.set_index("k").loc[4].speedup == pytest.approx((1.2 + 1.1) / 2)


def test_a_benchmark_without_the_seed_column_names_the_file_and_rule(tmp_path):
    rows = [{k: v for k, v in row("a", 2, 10, 5, 5, 1.0, 0.5, 20, False).items() if k != "seed"}]
    path = write_benchmark(tmp_path / "old.csv", rows)
    with pytest.raises(BenchmarkFileError, match=r"old.csv: missing column\(s\) \['seed'\]; rule bench"):
        read_benchmark("cot_easy", path)
    csv_path = write_benchmark(tmp_path / "b.csv", [row("a", 2, 10, 5, 5, 1.0, 0.5, 20, False, seed=1)])
    with pytest.raises(BenchmarkFileError, match=r"run.json: no conditions for seed\(s\) \[1\]"):
        read_benchmark("cot_easy", csv_path, write_run(tmp_path / "run.json", [0]))


def test_latency_per_correct_answer_is_infinite_without_a_correct_answer(benchmarks):
    assert per_answer_latency(3.0, 0.5) == 6.0
    assert per_answer_latency(3.0, 0.0) == math.inf and math.isnan(per_answer_latency(math.nan, 0.5))
    summary = summarize(experiments(benchmarks), resamples=100, seed=0).set_index(["experiment", "k"])
    assert summary.loc[("cod_hard", 2)].latency_per_correct_s == pytest.approx(1.25 / 0.5)
    assert summary.loc[("untrained_easy", 2)].latency_per_correct_s == math.inf


def test_best_k_measured_and_predicted(benchmarks):
    import pandas as pd

    summary = summarize(experiments(benchmarks), resamples=100, seed=0).set_index(["experiment", "k"])
    assert summary.loc[("cod_hard", 4)].best_k and not summary.loc[("cod_hard", 2)].best_k
    assert predicted_best_k(pd.DataFrame({"alpha": [0.0], "draft_cost": [0.01]})) == 1
    best = predicted_best_k(pd.DataFrame({"alpha": [0.95], "draft_cost": [0.01]}))
    assert best > 8 and all(leviathan_speedup(0.95, best, 0.01) >= leviathan_speedup(0.95, k, 0.01)
                            for k in range(1, 17))


def _styles(tmp_path, cot_rows, cod_rows, scenario="easy"):
    return experiments({f"cot_{scenario}": write_benchmark(tmp_path / f"cot_{scenario}.csv", cot_rows),
                        f"cod_{scenario}": write_benchmark(tmp_path / f"cod_{scenario}.csv", cod_rows)})


def test_comparison_pairs_problems_and_labels_the_primary(tmp_path):
    # Per-problem acceptance anti-correlated between the styles: only a paired resample sees the spread of
    # their difference, 10 - 2 a, in full.
    cot = [row(f"p{i}", k, 10, i % 11, 5, 1.0, 1.0, 20, False) for i in range(30) for k in (2, 4)]
    cod = [row(f"p{i}", k, 10, 10 - i % 11, 5, 1.0, 1.0, 20, False) for i in range(30) for k in (2, 4)]
    comparison = compare_styles(_styles(tmp_path, cot, cod), resamples=2000, seed=0,
                                primary_statistic="acceptance_rate", primary_k_configured=5)
    primary = comparison[comparison.label == "primary"]
    assert len(primary) == 1 and primary.iloc[0].k == 4 and primary.iloc[0].statistic == "acceptance_rate"
    assert (comparison.label == "exploratory").sum() == len(comparison) - 1
    r = primary.iloc[0]
    assert r.resampled == PAIRED_BOOTSTRAP and r.num_problems == 30
    # sd of the paired per-problem difference, over sqrt(30), times 2 x 1.96: the paired interval's width.
    differences = [(10 - 2 * (i % 11)) / 10 for i in range(30)]
    import numpy as np

    expected = 2 * 1.96 * np.std(differences) / 30 ** 0.5
    assert r.difference_high - r.difference_low == pytest.approx(expected, rel=0.15)


def test_primary_family_is_holm_corrected_across_scenarios(tmp_path):
    experiments_ = []
    for scenario, gain in (("easy", 6), ("hard", 0)):
        cot = [row(f"p{i}", 4, 10, 2 + i % 3, 5, 1.0, 1.0, 20, False) for i in range(20)]
        cod = [row(f"p{i}", 4, 10, 2 + gain + i % 3, 5, 1.0, 1.0, 20, False) for i in range(20)]
        experiments_ += _styles(tmp_path, cot, cod, scenario)
    comparison = compare_styles(experiments_, resamples=999, seed=0, primary_statistic="acceptance_rate",
                                primary_k_configured=4).set_index(["label", "scenario"])
    easy, hard = comparison.loc[("primary", "easy")], comparison.loc[("primary", "hard")]
    assert easy.family_size == hard.family_size == 2
    assert easy.p_value == pytest.approx(2 / 1000) and easy.p_holm == pytest.approx(4 / 1000)
    assert easy.beyond_noise and not hard.beyond_noise and hard.p_holm == 1.0


def test_primary_k_falls_back_to_the_nearest_k_run():
    assert primary_k(5, [2, 4]) == 4 and primary_k(5, [3, 5, 8]) == 5 and primary_k(3, [2, 4]) == 2


def test_plot_bars_carry_the_summary_values(benchmarks):
    scenarios, heights = bar_heights(summarize(experiments(benchmarks), resamples=100, seed=0), "acceptance_rate")
    assert scenarios == ["easy", "hard"]
    assert list(heights) == [("cod", 2), ("cod", 4), ("untrained", 2)]  # cot, cod, untrained; k ascending
    assert heights[("cod", 2)][1] == pytest.approx(14 / 40) and math.isnan(heights[("cod", 2)][0])


def _outputs(directory) -> dict[str, str]:
    outputs = {name: str(directory / f"{name}.png") for name in PLOTS}
    return outputs | {"summary": str(directory / "summary.csv"), "comparison": str(directory / "cod_vs_cot.csv"),
                      "comparison_table": str(directory / "cmp.html"), "summary_table": str(directory / "summary.html"),
                      "published_table": str(directory / "published.html")}


@pytest.fixture
def two_seed_run(tmp_path):
    """Both styles in one scenario, two seeds, bf16 weights on a GPU, a truncated answer and a mismatch."""
    paths, runs = {}, {}
    for style, accepted in (("cot", 4), ("cod", 6)):
        rows = [row(p, k, 10, accepted + (p == "b"), 5, 1.0, 0.8, 20, False, seed=s, truncated=p == "a",
                    matches=p != "c") for s in (0, 1) for p in "abc" for k in (2, 4)]
        paths[f"{style}_easy"] = write_benchmark(tmp_path / f"{style}.csv", rows)
        runs[f"{style}_easy"] = write_run(tmp_path / f"{style}.json", [0, 1], dtype="bfloat16", device="NVIDIA H200")
    return paths, runs


def test_write_summary_writes_csvs_tables_plots_and_says_how(two_seed_run, tmp_path):
    paths, runs = two_seed_run
    outputs = _outputs(tmp_path)
    write_summary(paths, runs, outputs, resamples=200, seed=0, primary_statistic="acceptance_rate", primary_k=5)
    rows = list(csv.DictReader(open(outputs["summary"])))
    assert len(rows) == 4 and rows[0]["num_seeds"] == "2" and float(rows[0]["truncated_share"]) == pytest.approx(1 / 3)
    comparison = list(csv.DictReader(open(outputs["comparison"])))
    assert [r["label"] for r in comparison].count("primary") == 1 and {"p_value", "p_holm"} <= set(comparison[0])
    assert all(open(outputs[name], "rb").read(8) == b"\x89PNG\r\n\x1a\n" for name in PLOTS)
    page = open(outputs["summary_table"]).read()
    assert "2 seed(s) per experiment" in page and "median of 3 repeat(s)" in page
    assert "NVIDIA H200" in page and "weights were not float32" in page and "before the stop check" in page
    assert "target&#x27;s LoRA initialisation and data order" in page
    table = open(outputs["comparison_table"]).read()
    assert "Primary comparison" in table and "at k = 4 (summary.primary.k = 5 was not benchmarked" in table
    assert "Exploratory comparisons" in table and "pairs the rows of one (seed, problem id)" in table
    published = open(outputs["published_table"]).read()
    assert "concurrency 1" in published and "batch 1" not in published
    assert all(f"{acceptance:.3f}" in published for _, _, acceptance, _, _ in PUBLISHED)


def test_float32_runs_need_no_weights_note(benchmarks, tmp_path):
    runs = {name: write_run(tmp_path / f"{name}.json", [0]) for name in benchmarks}
    outputs = _outputs(tmp_path)
    write_summary(benchmarks, runs, outputs, resamples=100, seed=0, primary_statistic="acceptance_rate", primary_k=5)
    assert "not float32" not in open(outputs["summary_table"]).read()
    assert "No primary comparison" in open(outputs["comparison_table"]).read()


def test_docs_are_written_from_the_run_and_name_commit_and_run(two_seed_run, tmp_path):
    from specdraft.analysis.demo_doc import write_docs

    paths, runs = two_seed_run
    run = tmp_path / "run"
    for name in paths:  # the run directory's layout: results/{experiment}/benchmark.csv and its run record
        (run / "results" / name).mkdir(parents=True)
        (run / "results" / name / "benchmark.csv").write_bytes(open(paths[name], "rb").read())
        (run / "results" / name / "benchmark_run.json").write_bytes(open(runs[name], "rb").read())
    results = run / "results"
    write_summary({n: str(results / n / "benchmark.csv") for n in paths},
                  {n: str(results / n / "benchmark_run.json") for n in paths},
                  _outputs(results) | {"summary": str(results / "summary.csv"),
                                       "comparison": str(results / "cod_vs_cot.csv")},
                  resamples=100, seed=0, primary_statistic="acceptance_rate", primary_k=4)
    (results / "plots").mkdir()
    for plot in ("acceptance_by_class", "transfer_easy"):
        (results / f"plots/{plot}.png").write_bytes(b"png")
    write_benchmark(results / "acceptance_check.csv", [{"experiment": "cot_easy", "k": 2, "num_matching": 3,
                                                        "num_problems": 3, "predicted_acceptance_rate": 0.4,
                                                        "measured_acceptance_rate": 0.4}])
    write_benchmark(results / "acceptance_by_class.csv", [{"style": "cot", "scenario": "easy", "class": "digit",
                                                           "tokens": 7, "token_share": 0.5, "agreement_rate": 0.25}])
    write_benchmark(results / "transfer_easy.csv", [{"target": "cot", "draft": "cod", "k": 2, "acceptance_rate": 0.3}])
    docs = tmp_path / "docs"
    write_docs(run, docs, run_commit="abc123")
    demo, analysis = (docs / "demo.md").read_text(), (docs / "analysis.md").read_text()
    record = json.loads((docs / "report/demo_run.json").read_text())
    for page in (demo, analysis):
        assert f"from run {record['run_id']}" in page and "run commit abc123" in page and "Rendered at commit" in page
    assert "| cot_easy | 2 | 2 | " in demo and "2 seed(s) per experiment" in demo and "Primary comparison" in demo
    assert "weights were not float32" in demo and "0.333 to 0.333 of each experiment's rows" in demo
    assert "| cot_easy | 2 | 3 / 3 | 0.4 | 0.4 |" in analysis
    assert (docs / "report/summary.csv").read_bytes() == (results / "summary.csv").read_bytes()


def test_demo_doc_says_when_the_targets_answer_far_shorter_than_their_training():
    import pandas as pd

    from specdraft.analysis.demo_doc import short_answers_note

    stats = pd.DataFrame([{"style": "cot", "scenario": "easy", "split": "train", "tokens_mean": 100.0},
                          {"style": "cod", "scenario": "easy", "split": "train", "tokens_mean": 40.0}])

    def summary(cot_tokens, cod_tokens):
        return pd.DataFrame([{"style": "cot", "scenario": "easy", "trained": True, "tokens_per_answer": cot_tokens},
                             {"style": "cod", "scenario": "easy", "trained": True, "tokens_per_answer": cod_tokens},
                             {"style": "untrained", "scenario": "easy", "trained": False, "tokens_per_answer": 500.0}])

    (line,) = short_answers_note(summary(3.0, 4.0), stats)
    assert "answer in 3-4 tokens" in line and "0.03-0.1 of their training" in line
    assert short_answers_note(summary(3.0, 30.0), stats) == []  # CoD at 0.75 of its training length: learned
