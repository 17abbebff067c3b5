"""The package's shape, read from its source with `ast`: small modules, imports that point one way, and no
module reaching into another's private names or rebinding its globals (nor a benchmark or script doing so to
the package's: what they need to change is an object's documented option)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "specdraft"
MAX_MODULE_LINES = 300


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def resolve(importer: str, node: ast.ImportFrom) -> str:
    """The absolute module a `from ... import` names, relative imports included."""
    if not node.level:
        return node.module or ""
    is_package = MODULES.get(importer, Path()).name == "__init__.py"
    base = importer.split(".")[: len(importer.split(".")) - node.level + is_package]
    return ".".join(base + ([node.module] if node.module else []))


def imports(importer: str, tree: ast.AST) -> list[tuple[str, str, str, int]]:
    """(module, imported name or '', the name it binds, line) for every import anywhere in the tree,
    function bodies too."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, "", a.asname or a.name.split(".")[0], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            found += [(resolve(importer, node), a.name, a.asname or a.name, node.lineno) for a in node.names]
    return found


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for module, imported, _, _ in imports(name, ast.parse(path.read_text())):
            submodule = f"{module}.{imported}"
            target = submodule if submodule in MODULES else module
            if target in MODULES and target != name:
                graph[name].add(target)
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the components of more than one module (each an import circle)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def defined_private_names(tree: ast.AST) -> set[str]:
    """Private names a module defines: functions, classes, module and class variables, `self._x` attributes."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
    return {n for n in names if is_private(n)}


PACKAGE_PRIVATE = {name: defined_private_names(ast.parse(path.read_text())) for name, path in MODULES.items()}


def reaching_in(source: str, own: str | None, where: str) -> list[str]:
    """Where `source` (package module `own`, or None outside the package) uses a private name of another
    specdraft module: `from specdraft.x import _y`; `m._y` on an imported specdraft module `m`; `obj._y`
    where `_y` is defined by another specdraft module and not by this one (`self._y`, `cls._y` are the
    object's own); or rebinds another module's global: `m.y = ...`."""
    tree = ast.parse(source)
    mine = PACKAGE_PRIVATE.get(own, set())
    others = set().union(*(names for name, names in PACKAGE_PRIVATE.items() if name != own))
    found, module_aliases = [], set()
    for module, imported, bound, line in imports(own or "", tree):
        if module.split(".")[0] != "specdraft":
            continue
        if is_private(imported) and module != own:
            found.append(f"{where}:{line}: from {module} import {imported}")
        if not imported or f"{module}.{imported}" in MODULES:
            module_aliases.add(bound)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        owner = node.value
        if (isinstance(node.ctx, ast.Store) and isinstance(owner, ast.Name) and owner.id in module_aliases
                and not is_private(node.attr)):
            found.append(f"{where}:{node.lineno}: {ast.unparse(node)} = ... (rebinds a module global)")
        if not is_private(node.attr):
            continue
        if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
            continue
        on_module = isinstance(owner, ast.Name) and owner.id in module_aliases
        if on_module or (node.attr in others and node.attr not in mine):
            found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_every_module_fits_in_300_lines():
    long = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split them by concept): {long}"


def test_no_import_circle():
    circles = strongly_connected(import_graph())
    assert not circles, f"import circles among specdraft modules: {circles}"


def test_no_module_reaches_into_another_modules_private_names_or_globals():
    found = [hit for name, path in MODULES.items()
             for hit in reaching_in(path.read_text(), name, str(path.relative_to(REPO)))]
    found += [hit for folder in ("benchmarks", "scripts") for path in sorted((REPO / folder).glob("*.py"))
              for hit in reaching_in(path.read_text(), None, str(path.relative_to(REPO)))]
    assert not found, "private names or globals of other modules (make an option public):\n" + "\n".join(found)


def test_the_checks_see_what_they_check():
    """The checks above pass on an empty answer; this shows they find what they look for."""
    graph = import_graph()
    assert "specdraft.engine.runner" in graph["specdraft.engine.engine"]
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert "_epoch" in PACKAGE_PRIVATE["specdraft.engine.engine"]
    reaching = ("from specdraft.engine.engine import _x\nimport specdraft.engine.runner as r\n"
                "from specdraft.engine import tuner\n"
                "def f(engine):\n    engine._epoch = 1\n    r._y()\n    tuner._z\n    self._w\n"
                "    r.STEP_KINDS = ()\n    engine.use_cuda_graphs = False\n")
    assert sorted(hit.split(": ")[1] for hit in reaching_in(reaching, None, "x.py")) == [
        "engine._epoch", "from specdraft.engine.engine import _x", "r.STEP_KINDS = ... (rebinds a module global)",
        "r._y", "tuner._z"]
