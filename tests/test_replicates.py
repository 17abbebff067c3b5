"""Replicates: every seed's benchmark combined into the experiment's one table and one run file."""

import csv
import json

import pytest

from specdraft.stages.combine_seeds import combine_seeds


def write_seed(tmp_path, seed, rows, columns=("id", "k", "speedup")):
    directory = tmp_path / f"seed{seed}"
    directory.mkdir()
    with open(directory / "benchmark.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(rows)
    (directory / "benchmark_run.json").write_text(json.dumps({"conditions": {"seed": seed}, "throughput": None}))
    return str(directory / "benchmark.csv"), str(directory / "benchmark_run.json")


def test_every_seed_s_rows_with_a_seed_column(tmp_path):
    paths = [write_seed(tmp_path, 3, [["p0", 2, 1.5], ["p1", 2, 0.9]]), write_seed(tmp_path, 7, [["p0", 2, 1.2]])]
    out_csv, out_run = tmp_path / "benchmark.csv", tmp_path / "benchmark_run.json"
    assert combine_seeds([3, 7], [c for c, _ in paths], [r for _, r in paths], str(out_csv), str(out_run)) == 3
    rows = list(csv.DictReader(open(out_csv)))
    assert list(rows[0]) == ["seed", "id", "k", "speedup"]
    assert [(r["seed"], r["id"], r["speedup"]) for r in rows] == [("3", "p0", "1.5"), ("3", "p1", "0.9"),
                                                                  ("7", "p0", "1.2")]
    assert json.loads(out_run.read_text()) == {"seeds": {"3": {"conditions": {"seed": 3}, "throughput": None},
                                                         "7": {"conditions": {"seed": 7}, "throughput": None}}}


def test_tables_of_other_columns_are_refused_and_nothing_is_written(tmp_path):
    a = write_seed(tmp_path, 0, [["p0", 2, 1.5]])
    b = write_seed(tmp_path, 1, [["p0", 2]], columns=("id", "k"))
    with pytest.raises(ValueError, match="seed1/benchmark.csv has other columns"):
        combine_seeds([0, 1], [a[0], b[0]], [a[1], b[1]], str(tmp_path / "out.csv"), str(tmp_path / "out.json"))
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "out.json").exists()
