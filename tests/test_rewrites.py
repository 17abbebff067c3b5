"""Pre-written rewrites (`data.rewrites`) and test sets (`data.test_sets`) in the seed project's layout."""

import json

import pytest
import yaml

from specdraft.plumbing.config import load_config
from specdraft.data.prepare import StylePaths, prepare
from specdraft.data.sources import problem_key
from specdraft.plumbing.jsonl import read_jsonl


def outputs(root):
    return {s: StylePaths(root / s / "train.jsonl", root / s / "test.jsonl", root / s / "report.json")
            for s in ("cot", "cod")}


def write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


@pytest.fixture
def gsm8k(repo):
    """The bundled GSM8K training rows, as (question, reference answer)."""
    rows = [json.loads(line) for line in (repo / "data/raw/gsm8k/train.jsonl").read_text().splitlines()]
    return [(r["question"], r["answer"].rsplit("####", 1)[1].strip().replace(",", "")) for r in rows]


def seed_like(tmp_path, gsm8k):
    """A rewrites directory in the seed's layout over bundled GSM8K problems 0-9, with one bad row of each kind."""
    q = [question for question, _ in gsm8k]
    a = [answer for _, answer in gsm8k]
    cod = [{"instruction": "  " + q[i].replace(" ", "\n ", 1), "output": f"x -> y = {a[i]} #### {a[i]}"}
           for i in range(7)]  # whitespace differs from the dataset's: still matched
    cod += [
        {"instruction": q[7], "output": f"x = 1 #### {int(a[7]) + 1}"},     # answer differs from the reference
        {"instruction": q[0], "output": f"again #### {a[0]}"},              # duplicate
        {"instruction": "A problem in no dataset.", "output": "#### 1"},     # not in the dataset
        {"instruction": q[8], "output": f"#### {a[8]}"},                    # no draft before ####
        '{"instruction": "truncated',                                        # malformed
    ]
    cot = [{"instruction": q[i], "output": f"First, we compute it.\n#### {a[i]}"} for i in (0, 1, 2, 3, 4, 5, 9)]
    write_jsonl(tmp_path / "rewrites/cod_easy.jsonl", cod)
    write_jsonl(tmp_path / "rewrites/cot_easy.jsonl", cot)


def test_rewrites_are_matched_counted_and_cover_the_training_sample(tmp_path, repo, gsm8k):
    seed_like(tmp_path, gsm8k)
    test_rows = [json.loads(line) for line in (repo / "data/raw/gsm8k/test.jsonl").read_text().splitlines()[:5]]
    train_rows = [json.loads(line) for line in (repo / "data/raw/gsm8k/train.jsonl").read_text().splitlines()]
    write_jsonl(tmp_path / "tests/easy_test.jsonl", test_rows + [train_rows[3]])
    data = load_config({"data": {"gsm8k": {"kind": "local", "path": str(repo / "data/raw/gsm8k")},
                                 "rewrites": str(tmp_path / "rewrites"), "test_sets": str(tmp_path / "tests"),
                                 "num_train": 100, "num_test": 100, "max_loss_share": 0.2}}).data
    report = prepare("easy", data, 0, outputs(tmp_path / "out"))

    assert report["rewrites"]["cod"] == {
        "file": str(tmp_path / "rewrites/cod_easy.jsonl"), "rows": 12, "matched": 10, "kept": 7,
        "dropped": {"invalid JSON": 1, "problem not in the dataset": 1, "duplicate problem": 1,
                    "answer differs from the reference": 1, "no step before '####'": 1}}
    assert report["rewrites"]["cot"] | {"file": None} == {"file": None, "rows": 7, "matched": 7, "kept": 7,
                                                           "dropped": {}}
    # Covered by a rewrite: 0-6 and 9. Problem 3 is a test problem; 6 has no CoT rewrite, 9 no CoD one.
    train = report["train"]
    assert (train["candidates"], train["excluded"], train["pool"], train["kept"]) == (8, {"in a test set": 1}, 5, 5)
    assert train["dropped"] == {"cot: no rewrite of the problem": 1, "cod: no rewrite of the problem": 1}
    assert report["solutions"]["train"] == {"cot": f"rewrites ({tmp_path / 'rewrites/cot_easy.jsonl'})",
                                            "cod": f"rewrites ({tmp_path / 'rewrites/cod_easy.jsonl'})"}
    assert report["solutions"]["test"] == {"cot": "dataset", "cod": "rules"}
    assert report["test_problems_in_train"] == 0

    records = {s: read_jsonl(tmp_path / "out" / s / "train.jsonl") for s in ("cot", "cod")}
    expected = {problem_key(gsm8k[i][0]) for i in (0, 1, 2, 4, 5)}
    for style in ("cot", "cod"):
        assert {problem_key(r["problem"]) for r in records[style]} == expected
    assert [r["id"] for r in records["cot"]] == [r["id"] for r in records["cod"]]
    assert all(r["solution"].startswith("x -> y = ") for r in records["cod"])  # the rewrite, verbatim
    assert all(r["solution"].startswith("First, we compute it.") for r in records["cot"])
    # The test set is the seed's file, whole, in both styles.
    tests = {s: read_jsonl(tmp_path / "out" / s / "test.jsonl") for s in ("cot", "cod")}
    assert [r["problem"] for r in tests["cot"]] == [r["problem"] for r in tests["cod"]]
    assert sorted(r["problem"] for r in tests["cot"]) == sorted(r["question"] for r in test_rows + [train_rows[3]])


def test_math_test_sets_in_the_seeds_fields_and_exclusion_across_scenarios(tmp_path, repo):
    """MATH test sets as the seed ships them (`question`, `answer` = the solution, `level`); a problem of
    the hard test set leaves every MATH training set, the medium one included."""
    math = [json.loads(line) for line in (repo / "data/raw/math/train.jsonl").read_text().splitlines()]
    medium = [r for r in math if r["level_num"] in (1, 2)]
    hard = [r for r in math if r["level_num"] in (3, 4)]
    seed_rows = lambda rows: [{"question": r["problem"], "answer": r["solution"], "level": r["level"],
                               "type": r["type"]} for r in rows]
    write_jsonl(tmp_path / "tests/medium_test.jsonl", seed_rows(medium[:3]))
    write_jsonl(tmp_path / "tests/hard_test.jsonl", seed_rows(hard[:4]))
    # The same text, whitespace aside, at another level: still the same problem.
    write_jsonl(tmp_path / "tests/hard_test.jsonl", seed_rows(hard[:4]) + [
        {"question": medium[5]["problem"] + "  ", "answer": medium[5]["solution"], "level": "Level 3"}])
    data = load_config({"data": {"math": {"kind": "local", "path": str(repo / "data/raw/math")},
                                 "test_sets": str(tmp_path / "tests"), "num_train": 1000, "num_test": 1000}}).data
    report = prepare("medium", data, 0, outputs(tmp_path / "out"))
    assert report["train"]["excluded"] == {"in a test set": 4}  # 3 medium test problems + medium[5]
    assert report["test"]["kept"] == 3 and report["test_problems_in_train"] == 0
    train = {r["problem"] for r in read_jsonl(tmp_path / "out/cot/train.jsonl")}
    assert not train & {r["problem"] for r in medium[:3] + [medium[5]]}
    test = read_jsonl(tmp_path / "out/cot/test.jsonl")
    assert {r["problem"] for r in test} == {r["problem"] for r in medium[:3]}
    assert all(r["solution"].endswith(f"#### {r['answer']}") for r in test)


def test_a_rewrites_directory_without_the_layout_is_an_error(tmp_path, repo):
    data = load_config({"data": {"gsm8k": {"kind": "local", "path": str(repo / "data/raw/gsm8k")},
                                 "rewrites": str(tmp_path / "missing")}}).data
    with pytest.raises(ValueError, match=r"data.rewrites: .*missing is not a directory"):
        prepare("easy", data, 0, outputs(tmp_path / "out"))
    (tmp_path / "wrong").mkdir()
    (tmp_path / "wrong/cod.jsonl").write_text("{}\n")
    data = load_config({"data": {"gsm8k": {"kind": "local", "path": str(repo / "data/raw/gsm8k")},
                                 "rewrites": str(tmp_path / "wrong")}}).data
    with pytest.raises(ValueError, match=r"data.rewrites: .*wrong holds none of the files \['cot_easy.jsonl'"):
        prepare("easy", data, 0, outputs(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_the_shipped_seed_data_and_its_config(repo):
    """data/seed-rewrites holds the seed's rewrites and test sets whole (PROVENANCE.md gives the counts), and
    config.yaml, the seed experiment, points at them and takes every rewrite."""
    counts = {"easy": 951, "medium": 902, "hard": 890}
    for scenario, rows in counts.items():
        for style in ("cot", "cod"):
            records = read_jsonl(repo / f"data/seed-rewrites/{style}_{scenario}.jsonl", ("instruction", "output"))
            assert len(records) == rows
            assert all(r["output"].rsplit("####", 1)[0].strip() for r in records)  # every one has a draft
    for scenario, rows in {"easy": 1000, "medium": 655, "hard": 1000}.items():
        assert len(read_jsonl(repo / f"data/seed-rewrites/tests/{scenario}_test.jsonl", ("question", "answer"))) == rows
    assert (repo / "data/seed-rewrites/LICENSE").is_file() and (repo / "data/seed-rewrites/PROVENANCE.md").is_file()
    data = load_config(yaml.safe_load((repo / "config.yaml").read_text())).data
    assert (repo / data.rewrites).is_dir() and (repo / data.test_sets).is_dir()
    assert data.num_train >= max(counts.values())
