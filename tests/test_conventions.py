"""Snakemake's conventions, checked on the rules as Snakemake parses them, so rules added later are held to
them too: lint-clean; every rule with its environment, log, benchmark, memory and run time; every wildcard
constrained; a --configfile story for every shipped configuration."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake.utils import update_config

from specdraft.plumbing.config import validate
from workflow_rules import REPO, workflow_rules

# What `snakemake --lint` prints besides lints (it has no quiet mode; `--lint json` prints text in Snakemake 9).
LINT_CHATTER = re.compile(r"Using workflow specific profile |Congratulations, your workflow is in a good condition!"
                          r"|Config file \S+ is extended by additional config specified via the command line\.")
SHIPPED_CONFIGS = sorted([*(REPO / "configs").glob("*.yaml"), REPO / "demo/config.yaml",
                          *(REPO / "benchmarks").glob("*.yaml")])


# config.yaml alone, then each shipped config over it: whether a param names an input's path depends on the config.
@pytest.mark.parametrize("path", [None, *SHIPPED_CONFIGS],
                         ids=["config.yaml", *(str(p.relative_to(REPO)) for p in SHIPPED_CONFIGS)])
def test_lint_finds_nothing(path, tmp_path):
    configfile = ["--configfile", str(path)] if path else []
    result = subprocess.run([sys.executable, "-m", "snakemake", "--lint", "-s", str(REPO / "Snakefile"),
                             "--directory", str(tmp_path), *configfile], capture_output=True, text=True,
                            timeout=300, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    lints = [line for line in (result.stdout + result.stderr).splitlines()
             if line.strip() and not LINT_CHATTER.match(line)]
    assert result.returncode == 0 and not lints, "\n".join(lints)


def test_every_rule_declares_env_log_benchmark_and_resources():
    for rule in workflow_rules():
        if not rule["runs"]:  # a target rule such as `all` runs nothing
            continue
        name = rule["name"]
        if rule["script"] or rule["shell"]:  # a `run:` block runs in Snakemake's own process: no env applies
            assert rule["conda"] and Path(rule["conda"]).is_file(), f"rule {name}: conda: an envs/*.yaml"
        assert rule["log"], f"rule {name}: log:"
        assert rule["benchmark"], f"rule {name}: benchmark:"
        # Snakemake's benchmark/ folder would land in the repository's benchmarks/ (speed scripts) when run
        # from the checkout: every benchmark file goes under results/benchmarks/<rule>.
        assert rule["benchmark"].startswith(f"results/benchmarks/{name}"), f"rule {name}: {rule['benchmark']}"
        assert {"mem_mb", "runtime"} <= set(rule["resources"]), f"rule {name}: resources: mem_mb and runtime"


def test_every_wildcard_is_constrained():
    for rule in workflow_rules():
        unconstrained = set(rule["wildcards"]) - set(rule["constrained"])
        assert not unconstrained, f"rule {rule['name']}: wildcard_constraints for {sorted(unconstrained)}"


def test_every_report_item_is_labelled_like_its_neighbours():
    # The report lists a (sub)category's items as one table whose columns are the label names.
    keys = {}
    for rule in workflow_rules():
        for item in rule["report"]:
            assert item["labels"], f"rule {rule['name']}: report({item['file']!r}, labels=...)"
            group = (item["category"], item["subcategory"])
            keys.setdefault(group, {})[item["file"]] = sorted(item["labels"])
    for group, files in keys.items():
        assert len({tuple(k) for k in files.values()}) == 1, f"report category {group}: label names differ: {files}"


@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=[str(p.relative_to(REPO)) for p in SHIPPED_CONFIGS])
def test_every_shipped_config_says_how_to_run_it_and_is_valid(path):
    relative = str(path.relative_to(REPO))
    header = "".join(line for line in path.read_text().splitlines(keepends=True) if line.startswith("#"))
    assert re.search(rf"--configfile( \S+\.yaml)* {re.escape(relative)}", header), \
        f"{relative}: its opening comment names its command"
    merged = copy.deepcopy(yaml.safe_load((REPO / "config.yaml").read_text()))
    update_config(merged, yaml.safe_load(path.read_text()) or {})  # as Snakemake merges a --configfile
    validate(merged)
