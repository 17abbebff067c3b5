"""Comment and docstring density of Python sources: the share of non-blank lines that are a comment or part of a
docstring (whole-line), and the share that hold one (trailing comments included), per package folder.

    python benchmarks/comment_density.py specdraft            # one line per folder, then the total
    python benchmarks/comment_density.py specdraft --json out.json
"""
from __future__ import annotations

import argparse
import ast
import io
import json
import sys
import tokenize
from pathlib import Path


def docstring_lines(tree: ast.AST) -> set[int]:
    """Line numbers of the module's, classes' and functions' docstrings."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                lines.update(range(first.lineno, first.end_lineno + 1))
    return lines


def count(path: Path) -> dict:
    """Non-blank lines, whole-line comments or docstrings, and lines holding either."""
    source = path.read_text()
    docs = docstring_lines(ast.parse(source))
    comment_only, trailing = set(), set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            row = token.start[0]
            (comment_only if token.line[: token.start[1]].strip() == "" else trailing).add(row)
    lines = source.splitlines()
    non_blank = {i + 1 for i, line in enumerate(lines) if line.strip()}
    whole = (docs | comment_only) & non_blank
    return {"non_blank": len(non_blank), "whole_line": len(whole), "holding": len(whole | (trailing & non_blank))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    folders: dict[str, dict] = {}
    for path in sorted(args.root.rglob("*.py")):
        c = count(path)
        totals = folders.setdefault(str(path.parent), {"non_blank": 0, "whole_line": 0, "holding": 0})
        for key in totals:
            totals[key] += c[key]
    folders["total"] = {key: sum(f[key] for f in folders.values()) for key in ("non_blank", "whole_line", "holding")}
    for name, f in folders.items():
        f["whole_line_share"] = round(f["whole_line"] / f["non_blank"], 4)
        f["holding_share"] = round(f["holding"] / f["non_blank"], 4)
        print(f"{name:32} {f['non_blank']:6} lines  {f['whole_line_share']:6.1%} comment/docstring lines"
              f"  {f['holding_share']:6.1%} holding one")
    if args.json:
        args.json.write_text(json.dumps({"command": " ".join(sys.argv), "folders": folders}, indent=1) + "\n")


if __name__ == "__main__":
    main()
