"""The workflow's rules as Snakemake itself parses them (so rules added later are checked too), and the
imports a rule's script reaches through the specdraft package."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Runs in a subprocess: parsing a Snakefile sets Snakemake's global state.
_DESCRIBE = r"""
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.io import get_flag_value, is_flagged
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings, StorageSettings

repo, workdir = Path(sys.argv[1]), Path(sys.argv[2])
with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
    workflow = api.workflow(resource_settings=ResourceSettings(), config_settings=ConfigSettings(),
                            storage_settings=StorageSettings(), snakefile=repo / "Snakefile",
                            workdir=workdir)._workflow  # the parsed workflow: the API has no public view of rules
    rules = []
    for rule in workflow.rules:
        base = Path(rule.snakefile).parent
        rules.append({
            "name": rule.name,
            "runs": not rule.norun,
            "script": str((base / rule.script).resolve()) if rule.script else None,
            "shell": bool(rule.shellcmd or rule.notebook or rule.wrapper),
            "conda": str((base / rule.conda_env).resolve()) if isinstance(rule.conda_env, str) else rule.conda_env,
            "log": [str(f) for f in rule.log],
            "benchmark": str(rule.benchmark) if rule.benchmark else None,
            "resources": sorted(rule.resources),
            "wildcards": sorted(rule.wildcard_names),
            "constrained": sorted(set(rule.wildcard_constraints) | set(workflow.wildcard_constraints)),
            "report": [{"file": str(f), "category": get_flag_value(f, "report").category,
                        "subcategory": get_flag_value(f, "report").subcategory,
                        "labels": get_flag_value(f, "report").labels}
                       for f in rule.output if is_flagged(f, "report")],
        })
print(json.dumps(rules))
"""


@cache
def workflow_rules() -> list[dict]:
    """Every rule: name, script, conda env file (absolute), log, benchmark, resources, wildcards, report items."""
    result = subprocess.run([sys.executable, "-c", _DESCRIBE, str(REPO), "/tmp"], capture_output=True, text=True,
                            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=300)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def _module_file(name: str) -> Path | None:
    path = REPO / (name.replace(".", "/") + ".py")
    if path.exists():
        return path
    package = REPO / name.replace(".", "/") / "__init__.py"
    return package if package.exists() else None


def _optional(node: ast.AST, parents: dict) -> bool:
    """An import inside `try: ... except ImportError` (or under `if TYPE_CHECKING:`) is not required."""
    while node in parents:
        parent = parents[node]
        if isinstance(parent, ast.Try) and node in parent.body:
            for handler in parent.handlers:
                names = [handler.type] if not isinstance(handler.type, ast.Tuple) else handler.type.elts
                if any(isinstance(n, ast.Name) and n.id in ("ImportError", "ModuleNotFoundError") for n in names):
                    return True
        if isinstance(parent, ast.If) and "TYPE_CHECKING" in ast.unparse(parent.test):
            return True
        node = parent
    return False


def _imports(path: Path, module: str) -> set[str]:
    """Every module a file imports, at any depth of its code (lazy imports count: some config reaches them)."""
    tree = ast.parse(path.read_text())
    parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and not _optional(node, parents):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not _optional(node, parents):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module
            found.add(name)
            found.update(f"{name}.{alias.name}" for alias in node.names)  # submodules imported by name
    return found


def third_party_imports(script: Path) -> set[str]:
    """Top-level names of the non-stdlib modules a script imports, directly or through specdraft."""
    todo, seen, external = [(script, "__main__")], set(), set()
    while todo:
        path, module = todo.pop()
        for name in _imports(path, module):
            top = name.split(".")[0]
            if top != "specdraft":
                if top not in sys.stdlib_module_names:
                    external.add(top)
                continue
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # a module's packages run their __init__ first
                prefix = ".".join(parts[:i])
                file = _module_file(prefix)
                if file and prefix not in seen:
                    seen.add(prefix)
                    todo.append((file, prefix))
    return external
