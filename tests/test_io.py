import pytest

from specdraft.plumbing.atomic import atomic_path
from specdraft.plumbing.jsonl import JsonlError, read_jsonl, write_jsonl


def test_jsonl_round_trip(tmp_path):
    records = [{"id": "a", "x": 1}, {"id": "b", "text": "ünïcode"}]
    assert write_jsonl(tmp_path / "r.jsonl", records) == 2
    assert read_jsonl(tmp_path / "r.jsonl") == records


@pytest.mark.parametrize("content, line, reason", [
    ('{"id": 1}\n{"id": 2\n', 2, "invalid JSON"),
    ('{"id": 1}\n\n[1, 2]\n', 3, "expected a JSON object"),
    ('{"id": 1}\n{"other": 2}\n', 2, "missing field(s) ['id']"),
])
def test_bad_line_names_file_and_line(tmp_path, content, line, reason):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(JsonlError) as error:
        read_jsonl(path, required=("id",))
    assert str(error.value).startswith(f"{path}:{line}: ") and reason in str(error.value)


def test_a_non_utf8_byte_names_file_line_and_column(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"id": 1}\n{"id": "caf\xe9"}\n')
    with pytest.raises(JsonlError) as error:
        read_jsonl(path, required=("id",))
    assert str(error.value) == f"{path}:2: not UTF-8 text (byte 0xe9 at column 12)"


def test_a_byte_order_mark_is_not_part_of_the_first_record(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"id": 1}\n')
    assert read_jsonl(path, required=("id",)) == [{"id": 1}]


def test_failed_write_leaves_nothing_behind(tmp_path):
    def records():
        yield {"id": 1}
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        write_jsonl(tmp_path / "out.jsonl", records())
    assert list(tmp_path.iterdir()) == []


def test_failed_directory_output_leaves_nothing_and_keeps_no_partial(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "adapter", directory=True) as tmp:
            (tmp / "weights.bin").write_text("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(tmp_path / "adapter", directory=True) as tmp:
        (tmp / "weights.bin").write_text("whole")
    assert (tmp_path / "adapter" / "weights.bin").read_text() == "whole"
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"]
