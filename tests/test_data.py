import json
from pathlib import Path

import pytest

from specdraft.data.answers import extract_answer, is_equivalent
from specdraft.plumbing.config import load_config
from specdraft.data.prepare import StylePaths, prepare
from specdraft.data.sources import Problem, check_loss, load_file, load_problems
from specdraft.data.styles import NoDraft, cod_solution, cot_solution, draft_steps, solution_rejection, step_yields
from specdraft.plumbing.jsonl import read_jsonl
from specdraft.data.prompts import SYSTEM_PROMPTS

# Real MATH training rows (MIT, Hendrycks et al. 2021) on which the old rules failed.
REAL_MATH_ROWS = Path(__file__).parent / "data/math_train_rows.jsonl"


def outputs(root: Path) -> dict[str, StylePaths]:
    return {style: StylePaths(root / style / "train.jsonl", root / style / "test.jsonl", root / style / "report.json")
            for style in ("cot", "cod")}


@pytest.fixture
def data_config(repo):
    return load_config({"data": {"gsm8k": {"kind": "local", "path": str(repo / "data/raw/gsm8k")},
                                 "math": {"kind": "local", "path": str(repo / "data/raw/math")},
                                 "num_train": 40, "num_test": 10}}).data


GSM8K = Problem(id="g", problem="q", answer="72",
                solution="Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
                         "Natalia sold 48+24 = <<48+24=72>>72 clips.\n#### 72")


def test_gsm8k_styles():
    assert cot_solution(GSM8K, "gsm8k") == (
        "Natalia sold 48/2 = 24 clips in May.\nNatalia sold 48+24 = 72 clips.\n#### 72")
    assert cod_solution(GSM8K, "gsm8k") == "48/2=24; 48+24=72 #### 72"


def test_math_cod_keeps_equations_and_unboxes():
    problem = Problem(id="m", problem="q", answer="0",
                      solution="This implies $a(2)+3=2-5$, so $a=-3$. Then $b=3$. So $a+b=\\boxed{0}$.")
    assert cod_solution(problem, "math") == "a(2)+3=2-5; a=-3; b=3; a+b=0 #### 0"


def test_math_cod_keeps_a_segment_whose_box_is_unclosed():
    problem = Problem(id="m", problem="q", answer="8",
                      solution="So $y=2$ and $x = \\boxed{8$. Hence \\boxed{8}.")
    assert cod_solution(problem, "math") == "y=2; x=8 #### 8"


def test_gsm8k_draft_ends_at_the_step_that_computes_the_answer():
    checked = Problem(id="g", problem="q", answer="72",
                      solution="48/2 = <<48/2=24>>24.\n48+24 = <<48+24=72>>72.\nCheck: 72-24 = <<72-24=48>>48.\n#### 72")
    assert cod_solution(checked, "gsm8k") == "48/2=24; 48+24=72 #### 72"
    # No annotation computes the answer: the prose equations do (percentages, parentheses).
    prose = Problem(id="g", problem="q", answer="15",
                    solution="First 40% + 20% = 60%.\nThen 60% * 50% = 30%\nSo 30% * 50% = 15%\n#### 15")
    assert cod_solution(prose, "gsm8k") == "40%+20%=60%; 60%*50%=30%; 30%*50%=15% #### 15"
    # A line's annotation, not also its prose (`20 x 2`); a bare result (`<<6=6>>`) gives way to the prose.
    mixed = Problem(id="g", problem="q", answer="6",
                    solution="He had 20 x 2 = <<20*2=40>>40.\nSoda: 2 - .5 = <<2-.5=1.5>>1.5\n"
                             "He bought 1.5 / .25 = <<6=6>>6 ounces.\n#### 6")
    assert cod_solution(mixed, "gsm8k") == "20*2=40; 2-.5=1.5; 1.5/.25=6 #### 6"


@pytest.mark.parametrize("solution, answer, reason", [
    ("They need 50 more because 750 minus 700 equals 50.\n#### 50", "50", "no equation in the solution"),
    ("2 * 4 = <<2*4=8>>8 square feet, and 8/50 = <<8/50=0.16>>0.16 of the wall.\n#### 16", "16",
     "no step yields the answer"),
])
def test_gsm8k_without_a_step_to_the_answer_has_no_draft(solution, answer, reason):
    with pytest.raises(NoDraft) as error:
        cod_solution(Problem(id="g", problem="q", answer=answer, solution=solution), "gsm8k")
    assert error.value.reason == reason


def test_relation_le_is_not_read_inside_left():
    """`\\left(` used to match the `\\le` relation, so a bare expression became a draft step."""
    problem = Problem(id="m", problem="q", answer="4",
                      solution="Note $\\left(\\frac12\\right)^2$ and $2\\left(3\\right)$. So $x \\leq 5$, "
                               "$x = \\boxed{4}$.")
    assert cod_solution(problem, "math") == "x \\leq 5; x=4 #### 4"
    assert step_yields("y \\le 4", "4", "hard") is False  # only `=` (and the like) yields a value


def test_real_math_rows_that_failed_before_get_a_draft_whose_last_step_yields_the_answer():
    """MATH rows on which the old rules emitted no draft at all (`#### 8`: a long chain, an `align*` block) or
    a draft whose steps never reach the answer (`\\left` read as `\\le`; only the last 5 equations of <= 60
    characters kept)."""
    problems, rejected = load_file("math", REAL_MATH_ROWS, "math/train", "test")
    assert not rejected
    drafts = {}
    for p in problems:
        try:
            drafts[p.id] = cod_solution(p, "math")
        except NoDraft as e:
            drafts[p.id] = e.reason
    assert drafts == {
        "train/algebra/42.json": "(\\sqrt[6]{4})^9 = 2^3 = 8 #### 8",
        "train/algebra/402.json": "1 + \\frac{2}{3+\\frac{4}{5}}=\\frac{29}{19} #### \\frac{29}{19}",
        "train/algebra/127.json": "36=-16t^2 + 80t; 0 = -16t^2 + 80t - 36 = 4t^2 - 20t + 9 = (2t - 1)(2t - 9); "
                                  "\\frac{1}{2}=0.5 #### 0.5",
        "train/prealgebra/130.json": "\\frac{2x+3}{5}=11; 2x+3=55; 2x=52; x=26 #### 26",
        "train/algebra/2206.json": "\\sqrt{\\frac{3}{8}}=\\frac{\\sqrt{6}}{4} #### \\frac{\\sqrt{6}}{4}",
        # The old rules wrote `#### 13` and `\\lceil{\\sqrt{x}}\\rceil=15; 196 < x \\leq 225 #### 29`: no draft,
        # and steps that never reach 29. These have none now, and prepare drops them from both styles.
        "train/prealgebra/602.json": "no equation in the solution",
        "train/algebra/2230.json": "no step yields the answer",
    }
    for p in problems:
        if "####" in drafts[p.id]:
            assert solution_rejection(drafts[p.id], p.answer, "hard", last_step_yields=True) is None


def test_the_answer_check_reads_the_drafts_own_last_step():
    assert solution_rejection("x=3; y=8 #### 8", "8", "hard", last_step_yields=True) is None
    # The reference after `####` does not make a draft whose steps stop short of it acceptable.
    assert solution_rejection("x=3; y=7 #### 8", "8", "hard", last_step_yields=True) == \
        "last step does not yield the answer"
    assert solution_rejection("#### 8", "8", "hard") == "no step before '####'"
    assert solution_rejection("x=8 #### 9", "8", "hard") == "answer differs from the reference"
    assert solution_rejection("x=8", "8", "hard") == "no '####' answer"
    assert draft_steps("a=1; b=2 #### 2") == ["a=1", "b=2"]


@pytest.mark.parametrize("scenario", ["easy", "medium", "hard"])
def test_prepare_writes_both_styles_on_the_same_problems(tmp_path, data_config, scenario):
    report = prepare(scenario, data_config, 0, outputs(tmp_path))
    train = report["train"]
    assert train["kept"] == 40 and report["test"]["kept"] == 10
    assert report["solutions"]["train"] == {"cot": "dataset", "cod": "rules"}
    # Every candidate is in the pool or dropped from both styles, counted by reason.
    assert train["candidates"] == train["pool"] + sum(train["dropped"].values())
    assert all(reason.startswith("cod: ") for reason in train["dropped"])
    assert report["test_problems_in_train"] == 0
    records = {}
    for style in ("cot", "cod"):
        assert json.loads((tmp_path / style / "report.json").read_text()) == {"style": style, **report}
        records[style] = read_jsonl(tmp_path / style / "train.jsonl")
        for r in records[style]:
            assert r["messages"][0]["content"] == SYSTEM_PROMPTS[style]
            assert r["messages"][-1] == {"role": "assistant", "content": r["solution"]}
            assert is_equivalent(extract_answer(r["solution"], scenario), r["answer"], scenario)
            if style == "cod":  # a draft: steps before `####`, the last one yielding the answer
                steps = draft_steps(r["solution"])
                assert steps and step_yields(steps[-1], r["answer"], scenario)
            if scenario == "medium":
                assert r["level"] in (1, 2)
            if scenario == "hard":
                assert r["level"] in (3, 4)
    assert [r["id"] for r in records["cot"]] == [r["id"] for r in records["cod"]]
    tests = {style: read_jsonl(tmp_path / style / "test.jsonl") for style in ("cot", "cod")}
    assert [r["id"] for r in tests["cot"]] == [r["id"] for r in tests["cod"]]
    cod_words = sum(len(r["solution"].split()) for r in records["cod"])
    cot_words = sum(len(r["solution"].split()) for r in records["cot"])
    assert cod_words < cot_words / 2


def test_a_problem_the_rules_cannot_draft_is_dropped_from_both_styles_and_counted(tmp_path):
    """Real MATH rows, two of which (level 3) have no rules draft: training drops them from CoT too; a test set
    keeps every problem (its CoD record then has no solution), so it stays the test set it was drawn as."""
    (tmp_path / "math").mkdir()
    rows = REAL_MATH_ROWS.read_text()
    (tmp_path / "math/train.jsonl").write_text(rows)
    # The same rows as test problems, their text changed: a problem in both splits would be excluded from training.
    (tmp_path / "math/test.jsonl").write_text(rows.replace("train/", "test/").replace('"problem": "', '"problem": "Test: '))
    data = load_config({"data": {"math": {"kind": "local", "path": str(tmp_path / "math")}, "num_train": 100,
                                 "num_test": 100}}).data
    report = prepare("hard", data, 0, outputs(tmp_path / "out"))
    undrafted = {"cod: no equation in the solution": 1, "cod: no step yields the answer": 1}
    assert report["train"]["dropped"] == undrafted
    ids = {style: [r["id"] for r in read_jsonl(tmp_path / "out" / style / "train.jsonl")] for style in ("cot", "cod")}
    assert ids["cot"] == ids["cod"] and "train/algebra/2230.json" not in ids["cot"]
    assert len(ids["cot"]) == report["train"]["kept"] == report["train"]["candidates"] - 2
    assert report["test"]["without_solution"] == undrafted
    test = {r["id"]: r for r in read_jsonl(tmp_path / "out/cod/test.jsonl")}
    undrafted = test["test/algebra/2230.json"]
    assert undrafted["solution"] is None
    assert undrafted["messages"][:-1][-1] == {"role": "user", "content": undrafted["problem"]}
    assert len(test) == report["test"]["candidates"] == len(read_jsonl(tmp_path / "out/cot/test.jsonl"))


def test_sampling_is_seeded(tmp_path, data_config):
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        prepare("easy", data_config, seed, outputs(tmp_path / name))
    assert (tmp_path / "a/cod/train.jsonl").read_text() == (tmp_path / "b/cod/train.jsonl").read_text()
    assert (tmp_path / "a/cod/train.jsonl").read_text() != (tmp_path / "c/cod/train.jsonl").read_text()


def test_math_answer_drops_a_trailing_period_inside_the_box(tmp_path):
    row = {"problem": "q", "level": "Level 3", "type": "Algebra",
           "solution": "So $x = \\boxed{-\\frac{5}{3}.}$"}
    (tmp_path / "train.jsonl").write_text(json.dumps(row) + "\n")
    source = load_config({"data": {"math": {"kind": "local", "path": str(tmp_path)}}}).data.math
    (problem,), rejected = load_problems("math", "train", source)
    assert problem.answer == "-\\frac{5}{3}" and not rejected
    assert is_equivalent(extract_answer(cot_solution(problem, "math"), "hard"), problem.answer, "hard")


def test_bad_source_rows_are_reported_with_file_and_line(tmp_path, repo):
    lines = (repo / "data/raw/gsm8k/train.jsonl").read_text().splitlines()[:20]
    lines[4] = '{"question": "truncated'
    lines[9] = json.dumps({"question": "no answer field"})
    lines[14] = json.dumps({"question": "q", "answer": "no separator"})
    (tmp_path / "train.jsonl").write_text("\n".join(lines) + "\n")
    source = load_config({"data": {"gsm8k": {"kind": "local", "path": str(tmp_path)}}}).data.gsm8k
    problems, rejected = load_problems("gsm8k", "train", source)
    assert len(problems) == 17
    assert [(r.where, r.line_number) for r in rejected] == [(str(tmp_path / "train.jsonl"), n) for n in (5, 10, 15)]
    assert "invalid JSON" in rejected[0].reason and "answer" in rejected[1].reason
    check_loss(rejected, len(problems), 0.2, "gsm8k train")  # 3 of 20 is within 20%
    with pytest.raises(ValueError, match=r"(?s)3 of 20 rows rejected.*train.jsonl:5: invalid JSON"):
        check_loss(rejected, len(problems), 0.01, "gsm8k train")


def test_solution_steps_split_drafts_lines_and_sentences():
    from specdraft.data.stats import solution_steps

    assert solution_steps("48/2=24; 48+24=72 #### 72") == ["48/2=24", "48+24=72"]
    assert solution_steps("Sold 24 in May.\nSold 72 in all.\n#### 72") == ["Sold 24 in May.", "Sold 72 in all."]
    assert solution_steps("So $a=-3$. Then $b=3$.\n#### 0") == ["So $a=-3$.", "Then $b=3$."]
    assert solution_steps("#### 5") == []


def test_dataset_stats_counts_tokens_and_compares_with_cot(tmp_path, data_config):
    from specdraft.data.stats import dataset_stats
    from specdraft.stages.base_models import train_tokenizer

    prepare("easy", data_config, 0, outputs(tmp_path))
    paths = {(style, "easy", "train"): str(tmp_path / style / "train.jsonl") for style in ("cot", "cod")}
    texts = [r["solution"] for path in paths.values() for r in read_jsonl(path)]
    tokenizer = train_tokenizer(texts, vocab_size=400)
    stats = dataset_stats(paths, tokenizer).set_index("style")
    cot_tokens = [len(tokenizer(r["solution"])["input_ids"]) for r in read_jsonl(paths[("cot", "easy", "train")])]
    assert stats.loc["cot", "examples"] == 40
    assert stats.loc["cot", "tokens_mean"] == pytest.approx(sum(cot_tokens) / len(cot_tokens))
    assert stats.loc["cot", "tokens_p99"] >= stats.loc["cot", "tokens_p90"] >= stats.loc["cot", "tokens_median"]
    assert stats.loc["cot", "token_ratio_to_cot"] == 1.0
    assert stats.loc["cod", "token_ratio_to_cot"] < 0.5
    assert stats.loc["cod", "words_per_step"] < stats.loc["cot", "words_per_step"]


def test_hub_sources_are_loaded_with_their_pinned_revision(monkeypatch):
    """The hub path without the network: `datasets.load_dataset` stands in, and must be asked for the
    configured id, configuration, revision and split; MATH-lighteval's fields become Problems."""
    import datasets

    calls = []
    rows = [{"problem": "Find $x$.", "level": "Level 2", "type": "Algebra", "solution": "$x=\\boxed{3}$."},
            {"problem": "?", "level": "Level ?", "type": "Algebra", "solution": "\\boxed{1}"},
            {"problem": "Broken", "level": "Level 4", "type": "Algebra", "solution": "no box"}]

    def load_dataset(path, name=None, revision=None, split=None):
        calls.append((path, name, revision, split))
        return datasets.Dataset.from_list(rows)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    source = load_config({"data": {"math": {"kind": "hub", "path": "org/math", "name": "default",
                                            "revision": "abc123"}}}).data.math
    problems, rejected = load_problems("math", "test", source)
    assert calls == [("org/math", "default", "abc123", "test")]
    assert [(p.answer, p.level, p.subject) for p in problems] == [("3", 2, "Algebra"), ("1", None, "Algebra")]
    assert [(r.where, r.line_number) for r in rejected] == [("org/math@abc123[test]", 3)]


def test_stats_skip_test_records_without_a_solution_and_compare_on_the_same_problems(tmp_path):
    from specdraft.data.stats import dataset_stats

    def words(texts, add_special_tokens=False):  # one token per word
        return {"input_ids": [t.split() for t in texts]}

    cot = [{"id": "a", "solution": "one two three four #### 4"}, {"id": "b", "solution": "1 2 3 4 5 6 7 #### 7"}]
    cod = [{"id": "a", "solution": "x=4 #### 4"}, {"id": "b", "solution": None}]
    for style, rows in (("cot", cot), ("cod", cod)):
        (tmp_path / f"{style}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    stats = dataset_stats({(s, "easy", "test"): str(tmp_path / f"{s}.jsonl") for s in ("cot", "cod")}, words)
    cod_row = stats.set_index("style").loc["cod"]
    assert cod_row["examples"] == 1 and cod_row["tokens_mean"] == 3
    assert cod_row["token_ratio_to_cot"] == pytest.approx(3 / 6)  # against problem a's CoT only, not the mean 7.5
