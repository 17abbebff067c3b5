"""Bad data inputs: each fails prepare with a message that names the file and line (or the file, when it is
empty) before anything expensive runs and with no output written; within `data.max_loss_share` a bad row is
dropped and counted in report.json by reason."""

import json

import pytest

from specdraft.plumbing.config import load_config
from specdraft.data.prepare import StylePaths, prepare

BAD_LINE = 5


def outputs(root):
    return {s: StylePaths(root / s / "train.jsonl", root / s / "test.jsonl", root / s / "report.json")
            for s in ("cot", "cod")}


def gsm8k_dir(tmp_path, repo, bad: bytes | None):
    """A GSM8K directory of 20 training rows (line BAD_LINE replaced by `bad`) and 10 test rows."""
    lines = (repo / "data/raw/gsm8k/train.jsonl").read_bytes().splitlines()[:20]
    if bad is not None:
        lines[BAD_LINE - 1] = bad
    source = tmp_path / "gsm8k"
    source.mkdir()
    (source / "train.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (source / "test.jsonl").write_bytes(b"".join((repo / "data/raw/gsm8k/test.jsonl").read_bytes()
                                                 .splitlines(True)[:10]))
    return source


def data_config(source, max_loss_share=0.01):
    return load_config({"data": {"gsm8k": {"kind": "local", "path": str(source)}, "num_train": 100, "num_test": 100,
                                 "cod_rewriter": "llm", "max_loss_share": max_loss_share}}).data


def never_called(problems, scenario):
    raise AssertionError("the rewriter (the teacher model) ran before the inputs were checked")


def a_row(repo, **change) -> bytes:
    row = json.loads((repo / "data/raw/gsm8k/train.jsonl").read_text().splitlines()[0])
    row.update(change)
    return json.dumps({k: v for k, v in row.items() if v is not None}).encode()


@pytest.mark.parametrize("bad, reason", [
    (b'{"question": "caf\xe9 au lait", "answer": "#### 3"}', "not UTF-8 text (byte 0xe9 at column 18)"),
    (b'{"question": "truncated', "invalid JSON"),
    (b'[1, 2]', "expected a JSON object, got list"),
    ("missing answer", "missing field(s) ['answer']"),
    ("no separator", "no '####' final answer"),
])
def test_a_bad_row_names_its_file_and_line_and_nothing_is_written(tmp_path, repo, bad, reason):
    if bad == "missing answer":
        bad = a_row(repo, answer=None)
    elif bad == "no separator":
        bad = a_row(repo, answer="just 5")
    source = gsm8k_dir(tmp_path, repo, bad)
    with pytest.raises(ValueError) as error:
        prepare("easy", data_config(source), 0, outputs(tmp_path / "out"), never_called)
    assert f"{source / 'train.jsonl'}:{BAD_LINE}: {reason}" in str(error.value)
    assert "1 of 20 rows rejected, more than data.max_loss_share=0.01" in str(error.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("bad, reason", [
    (b'{"question": "caf\xe9", "answer": "#### 3"}', "not UTF-8 text"),
    (b'{"question": "truncated', "invalid JSON"),
    ("missing answer", "missing field(s) ['answer']"),
])
def test_a_bad_row_within_the_loss_budget_is_dropped_and_counted_in_the_report(tmp_path, repo, bad, reason):
    """The report used to say `rejected: 0` while such rows were dropped."""
    if bad == "missing answer":
        bad = a_row(repo, answer=None)
    source = gsm8k_dir(tmp_path, repo, bad)
    report = prepare("easy", data_config(source, max_loss_share=0.1), 0, outputs(tmp_path / "out"),
                     lambda problems, scenario: [f"x=1 #### {p.answer}" for p in problems])
    assert report["inputs"][f"{source}/train.jsonl"] == {"rows": 20, "rejected": {reason: 1}}
    assert report["train"]["candidates"] == 19
    assert json.loads((tmp_path / "out/cod/report.json").read_text())["inputs"] == report["inputs"]


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"])
def test_an_empty_file_is_named_as_empty(tmp_path, repo, content):
    source = gsm8k_dir(tmp_path, repo, None)
    (source / "train.jsonl").write_bytes(content)
    with pytest.raises(ValueError, match=rf"^{source / 'train.jsonl'}: the file is empty \(no JSON lines; "
                                         r"from data.gsm8k.path\)$"):
        prepare("easy", data_config(source), 0, outputs(tmp_path / "out"), never_called)
    assert not (tmp_path / "out").exists()


def test_a_missing_file_is_named_with_its_config_key(tmp_path, repo):
    source = gsm8k_dir(tmp_path, repo, None)
    (source / "test.jsonl").unlink()
    with pytest.raises(ValueError, match=rf"^{source / 'test.jsonl'}: no such file \(from data.gsm8k.path\)$"):
        prepare("easy", data_config(source), 0, outputs(tmp_path / "out"), never_called)
    assert not (tmp_path / "out").exists()
