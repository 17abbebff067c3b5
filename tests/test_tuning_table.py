"""Stored kernel choices (`specdraft.engine.tuning_table`) and how the tuner uses them, on a CPU."""

import json

import pytest
import torch

from specdraft.engine import tuner as tuning
from specdraft.engine import tuning_table
from specdraft.engine.attention import AttentionConfig
from specdraft.engine.linear_kernel import Config

KEY = (896, 896, 1, torch.bfloat16, torch.int8, False, True, False, False)
CONFIG = Config(32, 256, 2, 4, 4)


@pytest.fixture
def tables(tmp_path, monkeypatch):
    """A local table under tmp_path and an empty shipped folder, for a GPU named 'Test GPU'."""
    monkeypatch.setattr(tuning_table, "SHIPPED", tmp_path / "shipped")
    monkeypatch.setenv("SPECDRAFT_KERNEL_CACHE", str(tmp_path / "local.json"))
    return tmp_path


def table() -> tuning_table.TuningTable:
    """A fresh table object for 'Test GPU' (each reads its files on first use)."""
    return tuning_table.TuningTable.for_gpu("Test GPU")


def test_gpu_names_become_file_names():
    assert tuning_table.gpu_slug("NVIDIA H200") == "NVIDIA_H200"
    assert tuning_table.gpu_slug("NVIDIA GeForce RTX 4090 (x)") == "NVIDIA_GeForce_RTX_4090_x"


def test_the_local_table_is_per_gpu_and_triton_version(monkeypatch):
    monkeypatch.delenv("SPECDRAFT_KERNEL_CACHE")
    monkeypatch.setattr(tuning_table, "_triton_version", lambda: "3.6.0")
    path = tuning_table.local_path("NVIDIA H200")
    assert path.parent.name == "specdraft" and path.name == "kernels-NVIDIA_H200-triton3.6.0.json"


def test_local_choices_come_before_shipped_ones_and_are_added_to(tables):
    shipped = {str(KEY): CONFIG._asdict(), "other": None}
    tuning_table.write(tables / "shipped" / "Test_GPU.json", "Test GPU", shipped, "a benchmark")
    tuning_table.write(tables / "local.json", "Test GPU", {"other": {"block_n": 8}}, "here")
    stored = table()
    assert stored.lookup(KEY) == CONFIG._asdict()
    assert stored.lookup("other") == {"block_n": 8}
    assert stored.lookup("absent") is tuning_table.MISSING
    stored.record("absent", None)
    assert json.loads((tables / "local.json").read_text())["choices"] == {"other": {"block_n": 8}, "absent": None}


def test_record_keeps_what_another_process_wrote(tables):
    stored = table()
    stored.lookup(KEY)  # this process reads the (empty) table
    tuning_table.write(tables / "local.json", "Test GPU", {"theirs": None}, "another process")
    stored.record("mine", None)
    assert set(json.loads((tables / "local.json").read_text())["choices"]) == {"theirs", "mine"}


def test_off_reads_and_writes_nothing(tables, monkeypatch):
    tuning_table.write(tables / "local.json", "Test GPU", {str(KEY): None}, "here")
    monkeypatch.setenv("SPECDRAFT_KERNEL_CACHE", "off")
    stored = table()
    assert stored.lookup(KEY) is tuning_table.MISSING
    stored.record("new", None)
    assert "new" not in json.loads((tables / "local.json").read_text())["choices"]


@pytest.mark.parametrize("text", ["{not json", '{"choices": [1, 2]}', '{"gpu": "x"}', '{"choices": {"k": 3}}'])
def test_a_malformed_table_is_an_error_naming_its_file(tables, text):
    (tables / "local.json").write_text(text)
    with pytest.raises(ValueError, match="local.json: not a kernel tuning table"):
        table().lookup(KEY)


@pytest.fixture
def choosing(tables, monkeypatch):
    """A tuner choosing as on a GPU (not the interpreter) over the tables, with tune() and run() recorded."""
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)  # a CPU-only torch has none
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    calls = {"tune": 0, "run": []}

    def tune():
        calls["tune"] += 1
        return CONFIG

    def run(config):
        calls["run"].append(config)

    return tuning.KernelTuner(table=table(), interpreting=False), calls, tune, run


def test_a_stored_choice_that_compiles_is_used_without_tuning(choosing, tables):
    tuner, calls, tune, run = choosing
    tuning_table.write(tables / "local.json", "Test GPU", {str(KEY): CONFIG._replace(block_n=64)._asdict()}, "here")
    assert tuner.choose(KEY, Config, run, tune) == CONFIG._replace(block_n=64)
    assert calls["tune"] == 0 and calls["run"] == [CONFIG._replace(block_n=64)]


def test_a_stored_torch_path_is_used_without_running_anything(choosing, tables):
    tuner, calls, tune, run = choosing
    tuning_table.write(tables / "local.json", "Test GPU", {str(KEY): None}, "here")
    assert tuner.choose(KEY, Config, run, tune) is tuning.REFERENCE
    assert calls == {"tune": 0, "run": []}


def test_a_missing_or_stale_choice_is_tuned_and_stored(choosing, tables):
    tuner, calls, tune, run = choosing
    assert tuner.choose(KEY, Config, run, tune) == CONFIG  # missing
    assert json.loads((tables / "local.json").read_text())["choices"][str(KEY)] == CONFIG._asdict()
    other = ("decode_attention", 1, 8, 5, 128, 256, torch.bfloat16)
    tuner.table.record(other, {"block_n": 64, "no_such_field": 1})  # from another version: does not fit
    assert tuner.choose(other, AttentionConfig, run, tune) == CONFIG
    assert calls["tune"] == 2


def test_a_stored_choice_that_fails_here_is_tuned_again_and_said(choosing, tables, caplog):
    tuner, calls, tune, _ = choosing
    tuning_table.write(tables / "local.json", "Test GPU", {str(KEY): CONFIG._replace(block_k=4096)._asdict()}, "here")

    def run(config):
        if config.block_k == 4096:
            raise RuntimeError("out of shared memory")

    assert tuner.choose(KEY, Config, run, tune) == CONFIG
    assert calls["tune"] == 1 and "out of shared memory" in caplog.text
    assert json.loads((tables / "local.json").read_text())["choices"][str(KEY)] == CONFIG._asdict()


def test_the_shipped_h200_table_holds_only_configurations_that_fit():
    """Every entry of the shipped H200 table builds its configuration type (what `KernelTuner.choose` does
    with it)."""
    table = tuning_table.read(tuning_table.SHIPPED / "NVIDIA_H200.json")
    assert table
    for key, choice in table.items():
        if choice is not None:
            (AttentionConfig if "decode_attention" in key else Config)(**choice)


def test_the_kernels_keys_find_the_shipped_h200_choices(tmp_path, monkeypatch):
    """The keys `fused_linear` and `decode_attention` build (as `KernelTuner.choice` receives them) are the
    shipped table's: the draft's qkv matrix at one row, and its attention over 256 keys."""
    monkeypatch.setenv("SPECDRAFT_KERNEL_CACHE", str(tmp_path / "local.json"))
    keys = []

    class Recording(tuning.KernelTuner):
        def choice(self, key, *args, **kwargs):
            keys.append(key)
            return tuning.REFERENCE

    from specdraft.engine.attention import decode_attention
    from specdraft.engine.linear_kernel import fused_linear

    with tuning.use(Recording()):
        x = torch.zeros(1, 896, dtype=torch.bfloat16)
        assert fused_linear(x, torch.zeros(1152, 896, dtype=torch.int8), torch.ones(1152, dtype=torch.bfloat16),
                            torch.zeros(1152, dtype=torch.bfloat16), norm_weight=torch.ones(896)) is None
        q, cache = torch.zeros(1, 2, 14, 64, dtype=torch.bfloat16), torch.zeros(1, 2, 512, 64, dtype=torch.bfloat16)
        assert decode_attention(q, cache, cache, torch.zeros(1, 1, 14, 256, dtype=torch.bfloat16)) is None
    shipped = tuning_table.TuningTable.for_gpu("NVIDIA H200")
    assert shipped.shipped.name == "NVIDIA_H200.json"
    assert [shipped.lookup(key) is not tuning_table.MISSING for key in keys] == [True, True], keys
