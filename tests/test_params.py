"""What makes Snakemake rerun a job: configuration that changes results does (seed, engine, dtype), the order
keys are written in does not. Checked on real Snakemake runs of the cheapest jobs (prepare)."""

import subprocess
import sys

import pytest
import yaml

from tests.test_workflow import micro_config, statuses

TARGET = "data/processed/cod_easy/train.jsonl"


def snakemake(repo, workdir, configfile, *args):
    command = [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "--directory", str(workdir),
               "--cores", "1", TARGET, "--configfile", str(configfile), *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr


def reversed_keys(value):
    return {k: reversed_keys(value[k]) for k in reversed(list(value))} if isinstance(value, dict) else value


@pytest.mark.slow
def test_key_order_reruns_nothing_and_a_changed_seed_reruns(tmp_path, repo):
    config = micro_config(repo)
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(config, sort_keys=True))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(reversed_keys(config), sort_keys=False))
    assert (tmp_path / "a.yaml").read_text() != (tmp_path / "b.yaml").read_text()
    snakemake(repo, tmp_path, tmp_path / "a.yaml")
    assert (tmp_path / TARGET).exists()

    reordered = statuses(snakemake(repo, tmp_path, tmp_path / "b.yaml", "--summary"))
    assert reordered[TARGET] == "ok" and set(reordered.values()) == {"ok"}
    assert "Nothing to be done" in snakemake(repo, tmp_path, tmp_path / "b.yaml", "-n")

    assert statuses(snakemake(repo, tmp_path, tmp_path / "b.yaml", "--summary", "--config", "seed=1"))[TARGET] == (
        "params changed")
    assert "Nothing to be done" not in snakemake(repo, tmp_path, tmp_path / "b.yaml", "-n", "--config", "seed=1")
