"""The README's set-up picks the CPU build of torch on a fresh Linux machine, without this machine's wheel folder.

What this proves: given `requirements.txt`'s index options and torch pin, and two package indexes laid out as
PyPI (torch 2.13.0, the CUDA build, which pulls nvidia packages) and PyTorch's CPU index (torch 2.13.0+cpu)
are, pip resolves torch to the +cpu build and installs no nvidia package. The indexes are local folders of tiny
fake wheels built here (no network), and pip runs isolated from this machine's configuration (its find-links
folder holds the real +cpu wheel, which would otherwise hide the question). What it does not prove: that the
real CPU index is reachable from a given machine and serves a wheel for its platform and Python (without it, the
+cpu pin fails with pip's "No matching distribution" instead of falling back to the CUDA build).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def fake_wheel(folder: Path, name: str, version: str, requires: list[str] = ()) -> None:
    """A minimal, valid pure-Python wheel: metadata only, listed in the folder's simple-index page."""
    dist = name.replace("-", "_")
    filename = f"{dist}-{version}-py3-none-any.whl"
    info = f"{dist}-{version}.dist-info"
    metadata = "\n".join(["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}",
                          *(f"Requires-Dist: {r}" for r in requires)]) + "\n"
    with zipfile.ZipFile(folder / filename, "w") as wheel:
        wheel.writestr(f"{info}/METADATA", metadata)
        wheel.writestr(f"{info}/WHEEL",
                       "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        wheel.writestr(f"{info}/RECORD", "")
    links = "".join(f'<a href="{p.name}">{p.name}</a>\n' for p in sorted(folder.glob("*.whl")))
    (folder / "index.html").write_text(f"<!DOCTYPE html><html><body>\n{links}</body></html>\n")


def simple_index(root: Path, packages: dict[str, list[tuple[str, list[str]]]]) -> str:
    """A PEP 503 simple index on disk: root/<project>/index.html next to its wheels. Returns its file URL."""
    for name, versions in packages.items():
        folder = root / name
        folder.mkdir(parents=True)
        for version, requires in versions:
            fake_wheel(folder, name, version, requires)
    return root.as_uri() + "/"


def requirement_lines(repo: Path) -> tuple[list[str], str]:
    """requirements.txt's index options and its torch requirement (the project line needs every dependency)."""
    lines = [line.split("#")[0].strip() for line in (repo / "requirements.txt").read_text().splitlines()]
    options = [line for line in lines if line.startswith("--")]
    torch = [line for line in lines if line.startswith("torch")]
    assert len(torch) == 1, "requirements.txt must pin torch exactly once"
    return options, torch[0]


def pip_choice(tmp_path: Path, requirements: list[str], pypi: str) -> dict[str, str]:
    """What pip would install from `requirements` with `pypi` as its index, isolated from every pip config."""
    (tmp_path / "requirements.txt").write_text("\n".join(requirements) + "\n")
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull}  # no global config: no /opt/wheels, no constraints
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--isolated", "--dry-run", "--ignore-installed", "--no-cache-dir",
         "--quiet", "--report", "-", "--index-url", pypi, "-r", str(tmp_path / "requirements.txt")],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    return {item["metadata"]["name"]: item["metadata"]["version"] for item in report["install"]}


@pytest.fixture
def indexes(tmp_path):
    pypi = simple_index(tmp_path / "pypi", {
        "torch": [("2.12.0", ["nvidia-cublas-cu12"]), ("2.13.0", ["nvidia-cublas-cu12"])],
        "nvidia-cublas-cu12": [("12.8.4.1", [])],
    })
    cpu = simple_index(tmp_path / "cpu", {"torch": [("2.12.0+cpu", []), ("2.13.0+cpu", [])]})
    return pypi, cpu


@pytest.mark.slow
def test_requirements_choose_the_cpu_build_on_a_fresh_machine(tmp_path, repo, indexes):
    pypi, cpu = indexes
    options, torch = requirement_lines(repo)
    assert f"--extra-index-url {CPU_INDEX}" in options
    chosen = pip_choice(tmp_path, [o.replace(CPU_INDEX, cpu) for o in options] + [torch], pypi)
    assert chosen == {"torch": "2.13.0+cpu"}


@pytest.mark.slow
def test_without_the_cpu_index_the_same_pin_is_the_cuda_build(tmp_path, repo, indexes):
    # The control: the fake PyPI reproduces the problem (CUDA torch and nvidia packages) that the index option fixes.
    pypi, _ = indexes
    _, torch = requirement_lines(repo)
    chosen = pip_choice(tmp_path, [torch.split("+")[0]], pypi)
    assert chosen["torch"] == "2.13.0" and "nvidia-cublas-cu12" in chosen


def test_readme_set_up_does_not_stall_on_an_unreachable_cpu_index(repo):
    # pip retries each index page 5 times with back-off (7.5 s a package; ~13 min for this project's ~105
    # packages where download.pytorch.org cannot be reached); the set-up line keeps it to one retry.
    readme = (repo / "README.md").read_text()
    assert ".venv/bin/pip install --retries 1 -r requirements.txt" in readme
