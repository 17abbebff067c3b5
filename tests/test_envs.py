"""The per-rule environments (envs/*.yaml) deploy: each holds what its rules' scripts import, its pip part
resolves against the package index, and its post-deploy script installs the package without `-e`.
Conda's channels are not reachable from every machine; what conda alone would do is not tested here."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tomllib
import urllib.request
from pathlib import Path

import pytest
import yaml
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from workflow_rules import REPO, third_party_imports, workflow_rules

ENVS = sorted((REPO / "envs").glob("*.yaml"))
# The environments' interpreter (envs/*.yaml: python=3.11); the dependency checks below evaluate markers for it.
PYTHON = "3.11"


def pip_requirements(env: Path) -> list[Requirement]:
    dependencies = yaml.safe_load(env.read_text())["dependencies"]
    pip = next((d["pip"] for d in dependencies if isinstance(d, dict) and "pip" in d), [])
    return [Requirement(line) for line in pip]


def distributions_of(requirements: list[Requirement]) -> set[str]:
    """The named distributions and, as installed here, everything they require (their own dependencies)."""
    environment = {**default_environment(), "python_version": PYTHON, "extra": ""}
    todo, found = [r.name for r in requirements], set()
    while todo:
        name = canonicalize_name(todo.pop())
        if name in found:
            continue
        found.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        todo += [r.name for r in map(Requirement, requires) if r.marker is None or r.marker.evaluate(environment)]
    if "torch" in found:
        # PyPI's Linux torch (what the envs install) is the CUDA build, which requires triton; this machine's CPU
        # build does not, so its metadata cannot say so. The engine imports triton only for its CUDA kernels.
        found.add("triton")
    return found


def test_every_env_is_used_and_installs_the_package_without_an_editable_link():
    used = {rule["conda"] for rule in workflow_rules() if rule["conda"]}
    assert used == {str(env) for env in ENVS}, "an env file no rule uses, or a rule's env that does not exist"
    for env in ENVS:
        assert not any(line.strip().startswith("-e") for line in env.read_text().splitlines()), env.name
        post_deploy = env.with_suffix(".post-deploy.sh")
        assert post_deploy.read_text() == (REPO / "envs/data.post-deploy.sh").read_text(), post_deploy.name


def test_each_rule_names_the_env_that_holds_what_its_script_imports():
    import_to_distributions = importlib.metadata.packages_distributions()
    for rule in workflow_rules():
        if not rule["script"]:
            continue
        held = distributions_of(pip_requirements(Path(rule["conda"])))
        for module in sorted(third_party_imports(Path(rule["script"]))):
            candidates = {canonicalize_name(d) for d in import_to_distributions.get(module, [module])}
            assert candidates & held, (f"rule {rule['name']}: its script imports {module} (from "
                                       f"{sorted(candidates)}), which {Path(rule['conda']).name} does not hold")


def test_env_pins_meet_the_package_requirements():
    declared = {canonicalize_name(r.name): r for r in map(
        Requirement, tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"])}
    for env in ENVS:
        for requirement in pip_requirements(env):
            pinned = re.fullmatch(r"==([\w.]+)", str(requirement.specifier))
            assert pinned, f"{env.name}: pin {requirement.name} to one version (==)"
            minimum = declared.get(canonicalize_name(requirement.name))
            if minimum is not None:
                assert minimum.specifier.contains(pinned.group(1)), f"{env.name}: {requirement} vs {minimum}"


REGISTRY = "https://pypi.org/simple"


def registry_reachable() -> bool:
    try:
        urllib.request.urlopen(f"{REGISTRY}/pip/", timeout=5).close()
        return True
    except OSError:
        return False


def test_env_pins_agree_with_what_they_require():
    # Offline, from the metadata installed here: every pin, and what it requires in turn, agrees with the env's
    # other pins. A pin whose version is not installed here is left to test_env_pip_part_resolves.
    environment = {**default_environment(), "python_version": PYTHON, "extra": ""}
    for env in ENVS:
        pins = {canonicalize_name(r.name): r.specifier for r in pip_requirements(env)}
        todo, seen = list(pins), set()
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            try:
                installed = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                continue
            if name in pins and not pins[name].contains(installed):
                continue  # another version than the pin's: its requirements are not known here
            for requirement in map(Requirement, importlib.metadata.requires(name) or []):
                if requirement.marker is not None and not requirement.marker.evaluate(environment):
                    continue
                required = canonicalize_name(requirement.name)
                if required in pins:
                    pinned = str(pins[required]).removeprefix("==")
                    assert requirement.specifier.contains(pinned, prereleases=True), (
                        f"{env.name}: {name} requires {requirement}, the env pins {required}=={pinned}")
                todo.append(required)


@pytest.fixture(scope="module")
def resolutions(tmp_path_factory):
    """`pip install --dry-run` of every env's pip part, all started at once: each is mostly network waits."""
    if not os.environ.get("SPECDRAFT_RESOLVE_ENVS"):
        # A registry without PEP 658 metadata (this project's machines reach one) makes pip download every
        # wheel to read its requirements: the four environments, CUDA torch included, are ~3 GB and minutes.
        pytest.skip("set SPECDRAFT_RESOLVE_ENVS=1 to resolve the environments against the registry (minutes)")
    if not registry_reachable():
        pytest.skip(f"{REGISTRY} cannot be reached from here: the environments' pip parts were not resolved")
    started = {}
    for env in ENVS:
        work = tmp_path_factory.mktemp(env.stem)
        (work / "requirements.txt").write_text("\n".join(map(str, pip_requirements(env))))
        # Against the registry itself (--isolated: no local index or constraint from this machine's pip
        # configuration), for the environments' Python whatever runs the tests (pip takes --python-version only
        # with --target); nothing is installed, and the registry serves metadata without the wheels.
        command = [sys.executable, "-m", "pip", "--isolated", "install", "--dry-run", "--quiet", "--index-url",
                   REGISTRY, "--target", str(work / "target"), "--python-version", PYTHON, "--only-binary", ":all:",
                   "--report", str(work / "report.json"), "-r", str(work / "requirements.txt")]
        started[env] = (subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
                        work / "report.json")
    yield started
    for process, _ in started.values():
        process.kill()
        process.wait()


@pytest.mark.slow
@pytest.mark.parametrize("env", ENVS, ids=[env.stem for env in ENVS])
def test_env_pip_part_resolves(env, resolutions):
    process, report = resolutions[env]
    output, _ = process.communicate(timeout=900)
    assert process.returncode == 0, f"{env.name} does not resolve:\n{output[-3000:]}"
    resolved = {canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"]
                for item in json.loads(report.read_text())["install"]}
    for requirement in pip_requirements(env):
        assert requirement.specifier.contains(resolved[canonicalize_name(requirement.name)]), requirement


def run_post_deploy(prefix: Path, source: Path | None) -> subprocess.CompletedProcess:
    env = {"PATH": f"{prefix / 'bin'}:{os.environ['PATH']}", "CONDA_PREFIX": str(prefix), "HOME": str(prefix)}
    env.update({k: v for k, v in os.environ.items() if k.startswith("PIP_")})
    if source is not None:
        env["SPECDRAFT_SOURCE"] = str(source)
    return subprocess.run(["bash", str(REPO / "envs/train.post-deploy.sh")], capture_output=True, text=True,
                          env=env, timeout=600)


@pytest.mark.slow
def test_post_deploy_installs_the_package_into_a_fresh_environment(tmp_path):
    # As Snakemake runs it: in the new environment ($CONDA_PREFIX), with the workflow's source tree passed by
    # the Snakefile. A venv stands in for the conda environment; the package goes in without dependencies.
    prefix = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", str(prefix)], check=True, timeout=300)
    before = sorted(p.name for p in REPO.iterdir())
    result = run_post_deploy(prefix, REPO)
    if result.returncode != 0 and "setuptools" in result.stdout + result.stderr and not registry_reachable():
        pytest.skip("building the package needs setuptools from a package index, and none is reachable")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert sorted(p.name for p in REPO.iterdir()) == before, "installing wrote into the source tree"

    probe = ("import importlib.metadata as m, json, specdraft, specdraft.plumbing.config as c; "
             "d = m.distribution('specdraft'); "
             "print(json.dumps([specdraft.__file__, c.SCHEMA_PATH.exists(), d.read_text('direct_url.json')]))")
    located = subprocess.run([str(prefix / "bin/python"), "-c", probe], capture_output=True, text=True,
                             cwd=tmp_path, env={"PATH": "/usr/bin:/bin"}, check=True)
    package_file, has_schema, direct_url = json.loads(located.stdout)
    assert Path(package_file).is_relative_to(prefix), package_file  # a copy in the environment, not the checkout
    assert has_schema  # the package data (config.schema.yaml) came along
    assert '"editable": true' not in (direct_url or "")


def test_post_deploy_without_the_source_tree_says_what_is_missing(tmp_path):
    result = run_post_deploy(tmp_path, None)
    assert result.returncode != 0 and "SPECDRAFT_SOURCE" in result.stderr
    result = run_post_deploy(tmp_path, tmp_path)
    assert result.returncode != 0 and "holds no specdraft source tree" in result.stderr
