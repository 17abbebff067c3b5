import json

import pytest

from specdraft.answers import extract_answer, is_equivalent
from specdraft.config import load_config
from specdraft.data.prepare import prepare
from specdraft.data.sources import Problem, check_loss, load_problems
from specdraft.data.styles import cod_solution, cot_solution
from specdraft.jsonl import read_jsonl
from specdraft.prompts import SYSTEM_PROMPTS


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
                      solution="So $x = \\boxed{8$ and $y=2$. Hence \\boxed{8}.")
    assert cod_solution(problem, "math") == "x = 8; y=2 #### 8"


@pytest.mark.parametrize("scenario", ["easy", "medium", "hard"])
def test_prepare_writes_both_styles_on_the_same_problems(tmp_path, data_config, scenario):
    ids = {}
    for style in ("cot", "cod"):
        out = tmp_path / style
        report = prepare(style, scenario, data_config, 0, out / "train.jsonl", out / "test.jsonl",
                         out / "report.json")
        assert report["train"]["kept"] == 40 and report["test"]["kept"] == 10 and report["rewriter"] == "rules"
        assert json.loads((out / "report.json").read_text()) == report
        records = read_jsonl(out / "train.jsonl")
        for r in records:
            assert r["messages"][0]["content"] == SYSTEM_PROMPTS[style]
            assert r["messages"][-1] == {"role": "assistant", "content": r["solution"]}
            assert is_equivalent(extract_answer(r["solution"], scenario), r["answer"], scenario)
            if scenario == "medium":
                assert r["level"] in (1, 2)
            if scenario == "hard":
                assert r["level"] in (3, 4)
        ids[style] = [r["id"] for r in records]
    assert ids["cot"] == ids["cod"]
    cod_words = sum(len(r["solution"].split()) for r in read_jsonl(tmp_path / "cod/train.jsonl"))
    cot_words = sum(len(r["solution"].split()) for r in read_jsonl(tmp_path / "cot/train.jsonl"))
    assert cod_words < cot_words / 2


def test_math_answer_drops_a_trailing_period_inside_the_box(tmp_path):
    row = {"problem": "q", "level": "Level 3", "type": "Algebra",
           "solution": "So $x = \\boxed{-\\frac{5}{3}.}$"}
    (tmp_path / "train.jsonl").write_text(json.dumps(row) + "\n")
    source = load_config({"data": {"math": {"kind": "local", "path": str(tmp_path)}}}).data.math
    (problem,), rejected = load_problems("math", "train", source)
    assert problem.answer == "-\\frac{5}{3}" and not rejected
    assert is_equivalent(extract_answer(cot_solution(problem, "math"), "hard"), problem.answer, "hard")


def test_sampling_is_seeded(tmp_path, data_config):
    prepare("cod", "easy", data_config, 0, tmp_path / "a/train.jsonl", tmp_path / "a/test.jsonl",
            tmp_path / "a/report.json")
    prepare("cod", "easy", data_config, 0, tmp_path / "b/train.jsonl", tmp_path / "b/test.jsonl",
            tmp_path / "b/report.json")
    prepare("cod", "easy", data_config, 1, tmp_path / "c/train.jsonl", tmp_path / "c/test.jsonl",
            tmp_path / "c/report.json")
    assert (tmp_path / "a/train.jsonl").read_text() == (tmp_path / "b/train.jsonl").read_text()
    assert (tmp_path / "a/train.jsonl").read_text() != (tmp_path / "c/train.jsonl").read_text()


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
    from specdraft.tiny import train_tokenizer

    paths = {}
    for style in ("cot", "cod"):
        out = tmp_path / style
        prepare(style, "easy", data_config, 0, out / "train.jsonl", out / "test.jsonl", out / "report.json")
        paths[(style, "easy", "train")] = str(out / "train.jsonl")
    texts = [r["solution"] for path in paths.values() for r in read_jsonl(path)]
    tokenizer = train_tokenizer(texts, vocab_size=400)
    stats = dataset_stats(paths, tokenizer).set_index("style")
    cot_tokens = [len(tokenizer(r["solution"])["input_ids"]) for r in read_jsonl(paths[("cot", "easy", "train")])]
    assert stats.loc["cot", "examples"] == 40
    assert stats.loc["cot", "tokens_mean"] == pytest.approx(sum(cot_tokens) / len(cot_tokens))
    assert stats.loc["cot", "tokens_p90"] >= stats.loc["cot", "tokens_median"]
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
    assert [(p.answer, p.level, p.subject) for p in problems] == [("3", 2, "Algebra")]
    assert [(r.where, r.line_number) for r in rejected] == [("org/math@abc123[test]", 3)]
