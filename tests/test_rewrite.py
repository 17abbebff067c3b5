import pytest

from specdraft.plumbing.config import load_config
from specdraft.data.prepare import StylePaths, prepare
from specdraft.data.rewrite import FEW_SHOT, INSTRUCTION, rewrite_messages, rewrite_solutions, verify_rewrite
from specdraft.plumbing.jsonl import read_jsonl


@pytest.mark.parametrize("text, reference, scenario, expected", [
    ("48/2=24; 48+24=72 #### 72", "72", "easy", "48/2=24; 48+24=72 #### 72"),
    ("48/2=24; 48+24=72 #### 72.0\nextra", "72", "easy", "48/2=24; 48+24=72 #### 72"),
    ("48/2=24; 48+24=71 #### 71", "72", "easy", None),        # wrong answer
    ("48/2=24; 48+24=72", "72", "easy", None),                # no separator
    ("half: 1/2 #### \\frac12", "0.5", "medium", "half: 1/2 #### 0.5"),
])
def test_a_rewrite_is_kept_only_if_its_answer_verifies(text, reference, scenario, expected):
    assert verify_rewrite(text, reference, scenario) == expected


def test_rewrite_prompt_has_instruction_few_shot_and_the_solution():
    messages = rewrite_messages("What is 2+2?", "2+2=4\n#### 4")
    assert messages[0] == {"role": "system", "content": INSTRUCTION}
    assert [m["role"] for m in messages[1:]] == ["user", "assistant"] * len(FEW_SHOT) + ["user"]
    assert messages[2]["content"] == "20 - x = 12; x = 20 - 12 = 8 #### 8"
    assert messages[-1]["content"] == "Question: What is 2+2?\n\nSolution:\n2+2=4\n#### 4"


def test_prepare_keeps_verified_rewrites_and_reports_the_rejected(tmp_path, repo):
    data = load_config({"data": {"gsm8k": {"kind": "local", "path": str(repo / "data/raw/gsm8k")},
                                 "num_train": 10, "num_test": 4, "cod_rewriter": "llm"}}).data

    def rewriter(problems, scenario):  # every other rewrite gets the answer wrong
        return [f"draft #### {p.answer}" if i % 2 == 0 else None for i, p in enumerate(problems)]

    def outputs(root):
        return {s: StylePaths(root / s / "train.jsonl", root / s / "test.jsonl", root / s / "report.json")
                for s in ("cot", "cod")}

    report = prepare("easy", data, 0, outputs(tmp_path), rewriter)
    assert report["solutions"]["train"] == {"cot": "dataset", "cod": "llm"}
    rejected = "cod: llm rewrite rejected (answer missing or wrong, or no draft)"
    assert report["train"] | {"excluded": None} == {"candidates": 100, "excluded": None, "pool": 100, "sampled": 10,
                                                    "rules_fallback": 0, "dropped": {rejected: 5}, "kept": 5}
    assert all(r["solution"].startswith("draft ####") for r in read_jsonl(tmp_path / "cod/train.jsonl"))
    # CoT keeps the same five problems.
    assert [r["id"] for r in read_jsonl(tmp_path / "cot/train.jsonl")] == \
        [r["id"] for r in read_jsonl(tmp_path / "cod/train.jsonl")]
    fallback = load_config({"data": {"gsm8k": {"kind": "local", "path": str(repo / "data/raw/gsm8k")},
                                     "num_train": 10, "num_test": 4, "rewrite_fallback": "rules"}}).data
    report = prepare("easy", fallback, 0, outputs(tmp_path / "f"), rewriter)
    train = report["train"]  # the five rejected rewrites replaced by the rules' drafts, where the rules have one
    assert train["kept"] + sum(train["dropped"].values()) == 10 and train["rules_fallback"] == train["kept"] - 5
    drafts = [r["solution"] for r in read_jsonl(tmp_path / "f/cod/train.jsonl")]
    assert sum(d.startswith("draft ####") for d in drafts) == 5  # the others are the rules' drafts
    with pytest.raises(ValueError, match=r"easy train: no problem left: 100 candidates .* dropped for want of a solution in every style"):
        prepare("easy", data, 0, outputs(tmp_path / "none"), lambda problems, scenario: [None] * len(problems))
    assert not (tmp_path / "none").exists()


def test_a_rewrite_without_a_draft_is_rejected():
    assert verify_rewrite("#### 72", "72", "easy") is None


@pytest.mark.slow
def test_a_teacher_that_learned_the_rewrite_gets_it_kept(repo):
    """End to end through the generation path with a real (tiny) model: a teacher overfitted on one
    rewrite reproduces it and the rewrite is kept; a random teacher's output is rejected."""
    from specdraft.stages.base_models import build_model, pretrain, train_tokenizer

    problem, cot, cod = FEW_SHOT[1]
    # No few-shot turns here: a short prompt that a tiny model memorises in seconds.
    conversation = rewrite_messages(problem, cot, few_shot=()) + [{"role": "assistant", "content": cod}]
    tokenizer = train_tokenizer([m["content"] for m in conversation] * 4, vocab_size=400)
    config = load_config({"tiny": {"pretrain_steps": 100, "pretrain_batch_size": 8, "max_position_embeddings": 1024,
                                   "pretrain_learning_rate": 0.005}})
    teacher = build_model(config.tiny.target, len(tokenizer), 1024, seed=0)
    random_teacher = build_model(config.tiny.target, len(tokenizer), 1024, seed=1).eval()
    pretrain(teacher, tokenizer, [conversation], config.tiny, seed=0)
    items = [(problem, cot, "72")]
    learned = rewrite_solutions(teacher, tokenizer, items, "easy", max_new_tokens=40, batch_size=1, seed=0,
                                enable_thinking=False, few_shot=())
    assert learned[0].solution == cod, learned[0].raw
    untrained = rewrite_solutions(random_teacher, tokenizer, items, "easy", max_new_tokens=8, batch_size=1, seed=0,
                                  enable_thinking=False, few_shot=())
    assert untrained[0].solution is None
