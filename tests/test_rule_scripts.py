"""Every rule script imports the package's stage inside `step()`: an import that starts CUDA (as importing
`specdraft.stages.train` did on the H200) before the job's GPUs are chosen would leave CUDA_VISIBLE_DEVICES unread."""

import ast
from pathlib import Path

import pytest

SCRIPTS = sorted(p for p in (Path(__file__).resolve().parents[1] / "scripts").glob("*.py")
                 if p.name != "report_screenshots.py")  # a command-line tool, not a rule script


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_stage_imported_after_gpus_are_chosen(script):
    top = [node for node in ast.parse(script.read_text()).body if isinstance(node, (ast.Import, ast.ImportFrom))]
    modules = [node.module if isinstance(node, ast.ImportFrom) else node.names[0].name for node in top]
    assert modules == ["specdraft.plumbing.workflow"], f"{script.name} imports {modules} before step() chose the GPUs"
