"""The README's first screen is what a new user types: keep it and CI in step."""

import re


def first_code_block(text: str) -> list[str]:
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    return [line.split("#")[0].strip() for line in block.strip().splitlines()]


def test_first_screen_has_set_up_demo_and_tests_and_ci_runs_them(repo):
    setup, demo, tests = first_code_block((repo / "README.md").read_text())
    ci = (repo / ".ci" / "run").read_text().splitlines()
    assert setup in ci and tests in ci  # CI installs as the README says, then runs exactly its test command
    assert ci[-1] == tests
    assert demo == ".venv/bin/snakemake --cores 2 --configfile demo/config.yaml"
