"""Exact offline acceptance: the replay of one teacher-forced pass equals speculative decoding's own counts."""

import copy

import pytest
import torch

from specdraft.analysis.offline_acceptance import (
    TargetOutput, analyse, check_predictions, draft_agreement, greedy_extended, replay_greedy, write_predictions,
)
from specdraft.plumbing.config import BenchConfig
from specdraft.decoding.speculative import autoregressive_generate, speculative_generate
from specdraft.models.engine_choice import serve
from specdraft.analysis.token_classes import classify_texts, classify_tokens, text_class, token_texts

MAX_NEW = 40


def close_draft(target, scale: float, seed: int):
    """The target with noise on its output layer: it agrees often but not always, so runs of every length,
    the cap at k and the continuation past eos all occur."""
    draft = copy.deepcopy(target)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        weight = draft.lm_head.weight
        weight.add_(scale * weight.std() * torch.randn(weight.shape, generator=generator))
    return draft.eval()


@pytest.fixture(scope="module")
def drafts(target, draft):
    return {"small": draft, "close": close_draft(target, 0.5, 0), "identical": target}


def prompts():
    return [torch.randint(0, 97, (1, 4 + 5 * i), generator=torch.Generator().manual_seed(10 + i)) for i in range(3)]


def predicted_stats(target, draft, input_ids, k, max_new_tokens, eos_token_id):
    output_ids, num_new = greedy_extended(target, input_ids[0].tolist(), max_new_tokens=max_new_tokens,
                                          eos_token_id=eos_token_id, extra=k)
    output = TargetOutput("p", input_ids[0].tolist(), output_ids, num_new)
    stats, accepted = replay_greedy(draft_agreement(draft, output), num_new_tokens=num_new,
                                    num_speculative_tokens=k, max_new_tokens=max_new_tokens)
    return output_ids[:num_new], stats, accepted


def assert_same_counts(predicted, measured):
    assert (predicted.num_proposed, predicted.num_accepted, predicted.num_steps,
            predicted.num_accepted_per_position) == (measured.num_proposed, measured.num_accepted,
                                                     measured.num_steps, measured.num_accepted_per_position)


@pytest.mark.parametrize("which", ["small", "close", "identical"])
@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_replay_equals_speculative_decoding(target, drafts, which, k):
    for input_ids in prompts():
        for max_new_tokens in (1, 7, MAX_NEW):
            answer, stats, _ = predicted_stats(target, drafts[which], input_ids, k, max_new_tokens, None)
            out = speculative_generate(target, drafts[which], input_ids, num_speculative_tokens=k,
                                       max_new_tokens=max_new_tokens)
            assert answer == out.token_ids.tolist()
            assert_same_counts(stats, out.stats)


@pytest.mark.parametrize("which", ["close", "identical"])
@pytest.mark.parametrize("k", [2, 5])
def test_replay_equals_speculative_decoding_with_eos(target, drafts, which, k):
    checked_eos_accepted = False
    for input_ids in prompts():
        reference = autoregressive_generate(target, input_ids, max_new_tokens=MAX_NEW).tolist()
        for eos in {reference[5], reference[len(reference) // 2]}:  # tokens the target writes early, mid-way
            answer, stats, _ = predicted_stats(target, drafts[which], input_ids, k, MAX_NEW, eos)
            out = speculative_generate(target, drafts[which], input_ids, num_speculative_tokens=k,
                                       max_new_tokens=MAX_NEW, eos_token_id=eos)
            assert answer == out.token_ids.tolist() and answer[-1] == eos
            assert_same_counts(stats, out.stats)
            # Every step emits its accepted tokens and a recovered/bonus token, but the last when eos is one of
            # its accepted draft tokens: the step ends at eos, yet what it accepted past eos is counted (vLLM
            # counts before its stop check), so accepted + steps exceeds the answer by at most k.
            counted = stats.num_accepted + stats.num_steps
            assert len(answer) <= counted <= len(answer) + k
            checked_eos_accepted |= counted > len(answer)
    if which == "identical":
        assert checked_eos_accepted


def test_replay_equals_speculative_decoding_on_the_native_engine(target, drafts):
    engine_target = serve(target, "native", max_seq_len=256, weights="model_dtype")
    engine_draft = serve(drafts["close"], "native", max_seq_len=256, weights="model_dtype")
    for input_ids in prompts():
        for k in (2, 4):
            _, stats, _ = predicted_stats(engine_target, engine_draft, input_ids, k, MAX_NEW, None)
            out = speculative_generate(engine_target, engine_draft, input_ids, num_speculative_tokens=k,
                                       max_new_tokens=MAX_NEW)
            assert_same_counts(stats, out.stats)


def test_replay_by_hand():
    agrees = [True, True, False, True, True, True, False, False, True, True]
    stats, accepted = replay_greedy(agrees, num_new_tokens=10, num_speculative_tokens=2, max_new_tokens=10)
    # Steps start at 0 (accepts 0,1; bonus 2), 3 (accepts 3,4; bonus 5), 6 (recovered 6), 7 (recovered 7),
    # 8: only one proposal fits before max_new_tokens (accepts 8; bonus 9).
    assert (stats.num_steps, stats.num_proposed, stats.num_accepted) == (5, 9, 5)
    assert stats.num_accepted_per_position == [3, 2]
    assert accepted == [True, True, False, True, True, False, False, False, True, False]


def test_replay_past_eos_and_its_checks():
    # Eos at position 1; the draft keeps agreeing past it: the one step's verification accepts all 3 draft
    # tokens and the step ends at eos; counted before the stop check (vLLM), 3 proposed and 3 accepted.
    stats, accepted = replay_greedy([True] * 4, num_new_tokens=2, num_speculative_tokens=3, max_new_tokens=10)
    assert (stats.num_steps, stats.num_proposed, stats.num_accepted, accepted) == (1, 3, 3, [True, True])
    # Agreement stops right after the eos: the run of agreements through the eos is what counts accepted.
    stats, _ = replay_greedy([True, True, False, True], num_new_tokens=2, num_speculative_tokens=3,
                             max_new_tokens=10)
    assert (stats.num_proposed, stats.num_accepted) == (3, 2)
    with pytest.raises(ValueError, match="needs 5"):
        replay_greedy([True] * 4, num_new_tokens=3, num_speculative_tokens=3, max_new_tokens=6)
    with pytest.raises(ValueError, match="num_speculative_tokens must be >= 1"):
        replay_greedy([True] * 4, num_new_tokens=3, num_speculative_tokens=0, max_new_tokens=6)


def test_greedy_extended_continues_past_eos_only_for_the_replay(target):
    input_ids = prompts()[0]
    reference = autoregressive_generate(target, input_ids, max_new_tokens=MAX_NEW).tolist()
    eos = reference[10]
    output_ids, num_new = greedy_extended(target, input_ids[0].tolist(), max_new_tokens=MAX_NEW,
                                          eos_token_id=eos, extra=4)
    assert num_new == reference.index(eos) + 1
    assert output_ids == reference[: num_new + 4]


# The stage on a chat tokenizer: the bench's own rows against the prediction, row for row.

@pytest.fixture(scope="module")
def tokenizer():
    from specdraft.stages.base_models import train_tokenizer

    texts = ["Natalia sold 48/2 = 24 clips in May.\nShe sold 48+24 = 72 clips.\n#### 72",
             "48/2=24; 48+24=72 #### 72", "We have $\\frac{1}{2} + x^2 = 3$, so \\boxed{5}."] * 10
    return train_tokenizer(texts, 300)


@pytest.fixture(scope="module")
def chat_models(tokenizer):
    from tests.tiny_models import tiny_qwen2

    target = tiny_qwen2(5, vocab_size=320)
    return target, close_draft(target, 0.6, 1)


def records(n):
    problems = ["Natalia sold 48 clips. How many?", "What is 1/2 + 3?", "Half of 48 is?"]
    return [{"id": f"q{i}", "scenario": "easy", "answer": "72",
             "messages": [{"role": "system", "content": "Think step by step."},
                          {"role": "user", "content": problems[i % 3]}, {"role": "assistant", "content": "x"}]}
            for i in range(n)]


def test_prediction_equals_the_benchmark_rows(tokenizer, chat_models, tmp_path):
    from specdraft.stages.bench import run_benchmark
    from specdraft.stages.bench_rows import write_rows

    target, draft = chat_models
    cfg = BenchConfig(num_problems=3, num_speculative_tokens=(1, 3, 6), max_new_tokens=24, temperature=0.0, top_p=1.0, concurrency=1,
                      repeats=1)
    outputs, positions, predictions = analyse(target, draft, tokenizer, records(3), cfg, enable_thinking=False)
    measured, _ = run_benchmark(target, draft, tokenizer, records(3), cfg, seed=0, enable_thinking=False)
    # Every k from 1 to the largest configured is predicted; the configured ones are measured.
    assert [(p.id, p.k) for p in predictions] == [(f"q{i}", k) for i in range(3) for k in range(1, 7)]
    by_key = {(p.id, p.k): p for p in predictions}
    assert len(measured) == 9
    for m in measured:
        p = by_key[(m.id, m.k)]
        assert (p.id, p.k, p.num_new_tokens, p.num_proposed, p.num_accepted, p.num_steps, p.accepted_per_position) \
            == (m.id, m.k, m.num_new_tokens, m.num_proposed, m.num_accepted, m.num_steps, m.accepted_per_position)
    assert 0 < sum(p.num_accepted for p in predictions) < sum(p.num_proposed for p in predictions)

    # Per position: the answer's tokens, then the continuation past its end; accepted tokens agree.
    for output in outputs:
        rows = [r for r in positions if r["id"] == output.id]
        assert [r["token_id"] for r in rows] == output.output_ids
        assert [r["after_end"] for r in rows] == [i >= output.num_new_tokens for i in range(len(rows))]
        assert all(r["target_agrees"] for r in rows)  # float32: the teacher-forced target is its own greedy
        assert all(r["draft_agrees"] for r in rows if r["accepted_k6"])

    # Through the files: the check stage reads both CSVs and finds every row equal; one changed count is not.
    write_predictions(tmp_path / "prediction.csv", predictions)
    write_rows(tmp_path / "benchmark.csv", measured)
    check = check_predictions({("cot_easy", 0): (tmp_path / "prediction.csv", tmp_path / "benchmark.csv")}, 0.0)
    assert check.num_matching.tolist() == check.num_problems.tolist() == [3, 3, 3]
    assert check.predicted_acceptance_rate.tolist() == check.measured_acceptance_rate.tolist()
    text = (tmp_path / "benchmark.csv").read_text().splitlines()
    fields = text[1].split(",")
    fields[5] = str(int(fields[5]) + 1)  # num_accepted of the first row
    (tmp_path / "benchmark.csv").write_text("\n".join([text[0], ",".join(fields), *text[2:]]) + "\n")
    check = check_predictions({("cot_easy", 0): (tmp_path / "prediction.csv", tmp_path / "benchmark.csv")}, 0.0)
    assert check.num_matching.tolist() == [2, 3, 3]


def test_check_names_a_missing_prediction(tokenizer, chat_models, tmp_path):
    from specdraft.stages.bench import run_benchmark
    from specdraft.stages.bench_rows import write_rows

    target, draft = chat_models
    cfg = BenchConfig(num_problems=2, num_speculative_tokens=(2,), max_new_tokens=8, temperature=0.0, top_p=1.0, concurrency=1,
                      repeats=1)
    _, _, predictions = analyse(target, draft, tokenizer, records(1), cfg, enable_thinking=False)
    write_predictions(tmp_path / "prediction.csv", predictions)
    write_rows(tmp_path / "benchmark.csv",
               run_benchmark(target, draft, tokenizer, records(2), cfg, seed=0, enable_thinking=False)[0])
    with pytest.raises(ValueError, match="no prediction for problem 'q1', k=2"):
        check_predictions({("cod_easy", 0): (tmp_path / "prediction.csv", tmp_path / "benchmark.csv")}, 0.0)


# Token classes.

@pytest.mark.parametrize("text, expected", [
    ("48", "digit"), (" 3", "digit"), ("3.5", "digit"), ("=", "operator"), (" +", "operator"), ("×", "operator"),
    ("\\frac", "latex"), (" \\", "latex"), ("}{", "latex"), ("$", "other"), (" clips", "word"), ("Half", "word"),
    ("\n\n", "whitespace"), (" ", "whitespace"), (";", "other"), ("3x", "other"), ("}.", "other"), ("", "other"),
])
def test_text_class(text, expected):
    assert text_class(text) == expected


def test_classes_of_an_answer_with_a_command_split_in_tokens():
    texts = ["So", " $\\", "fr", "ac", "{", "1", "}", " x", "$", " ####", " 7", "2", "<|im_end|>"]
    classes = classify_texts(texts, [False] * 12 + [True])
    assert classes == ["word", "latex", "latex", "latex", "latex", "digit", "latex", "word", "other", "tail",
                       "tail", "tail", "end"]
    # The tail starts in the token holding the separator's first character, even one split across tokens.
    assert classify_texts(["5", " #", "###", " 5"], [False] * 4) == ["digit", "tail", "tail", "tail"]
    assert classify_texts(["a", "#"], [False, False]) == ["word", "other"]


def test_classes_on_a_byte_level_tokenizer(tokenizer):
    ids = tokenizer("48/2=24; 48+24=72 #### 72")["input_ids"] + [tokenizer.eos_token_id]
    texts, classes = token_texts(tokenizer, ids), classify_tokens(tokenizer, ids)
    assert "".join(texts) == "48/2=24; 48+24=72 #### 72<|im_end|>"
    by_text = dict(zip(texts, classes))
    assert by_text["/"] == by_text["="] == by_text["+"] == "operator"
    assert by_text["48"] == by_text["24"] == "digit"
    assert classes[-1] == "end" and classes[-2] == "tail" and by_text[";"] == "other"


def test_class_table_counts_the_answer_tokens(tokenizer, chat_models, tmp_path):
    from specdraft.analysis.offline_acceptance import POSITION_FIELDS, write_csv
    from specdraft.analysis.class_acceptance import write_class_acceptance

    target, draft = chat_models
    cfg = BenchConfig(num_problems=3, num_speculative_tokens=(2, 5), max_new_tokens=16, temperature=0.0, top_p=1.0, concurrency=1,
                      repeats=1)
    outputs, positions, _ = analyse(target, draft, tokenizer, records(3), cfg, enable_thinking=False)
    fields = POSITION_FIELDS + ["accepted_k2", "accepted_k5"]
    write_csv(tmp_path / "cot.csv", positions, fields)
    write_csv(tmp_path / "cod.csv", [r for r in positions if r["id"] != "q2"], fields)
    table_path, plot_path = tmp_path / "by_class.csv", tmp_path / "plots/by_class.png"
    write_class_acceptance({"cot_easy": tmp_path / "cot.csv", "cod_easy": tmp_path / "cod.csv"}, table_path, plot_path)
    import pandas as pd

    table = pd.read_csv(table_path)
    assert list(table.columns) == ["style", "scenario", "class", "tokens", "token_share", "agreement_rate",
                                   "accepted_share_k2", "accepted_share_k5"]
    cot = table[table["style"] == "cot"]
    answer = [r for r in positions if not r["after_end"]]
    assert cot.tokens.sum() == len(answer) == sum(o.num_new_tokens for o in outputs)
    assert cot.token_share.sum() == pytest.approx(1.0, abs=1e-3)
    for row in cot.itertuples():
        members = [r for r in answer if r["token_class"] == row._3]
        assert row.tokens == len(members)
        assert row.agreement_rate == pytest.approx(sum(r["draft_agrees"] for r in members) / len(members), abs=1e-4)
        assert row.accepted_share_k5 == pytest.approx(sum(r["accepted_k5"] for r in members) / len(members), abs=1e-4)
    assert table[table["style"] == "cod"].tokens.sum() == len([r for r in answer if r["id"] != "q2"])
    assert plot_path.stat().st_size > 0
