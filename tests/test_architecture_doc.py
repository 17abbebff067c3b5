"""docs/architecture.md's package map names every module of the package, and nothing that is not there."""

import re

PACKAGE_HEADING = re.compile(r"^\*\*`(\w+)/`\*\*", re.M)


def test_package_map_matches_the_tree(repo):
    text = (repo / "docs/architecture.md").read_text()
    section = text[text.index("## Package map"):text.index("## Where to add")]
    headings = list(PACKAGE_HEADING.finditer(section))
    named = set()
    for heading, following in zip(headings, [*headings[1:], None]):
        body = section[heading.end():following.start() if following else len(section)]
        named |= {f"{heading.group(1)}/{name}" for name in re.findall(r"`([\w.]+\.(?:py|yaml))`", body)}
    package = repo / "specdraft"
    present = {str(p.relative_to(package)) for p in [*package.glob("*/*.py"), *package.glob("*/*.yaml")]
               if p.name != "__init__.py"}
    assert not named - present, f"the map names modules that do not exist: {sorted(named - present)}"
    assert not present - named, f"modules missing from docs/architecture.md: {sorted(present - named)}"
    assert not [p.name for p in package.glob("*.py") if p.name != "__init__.py"], "specdraft/ holds packages only"
