"""The documentation: README.md is a short front door, the reference lives in docs/, and every
relative link between them (anchors included) leads somewhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer

from auditor.cli.app import app
from tests.helpers import REPO

README = REPO / "README.md"
PAGES = [README, REPO / "CONTRIBUTING.md", *sorted((REPO / "docs").glob("*.md"))]
README_MAX_LINES = 250

FENCED = re.compile(r"^```.*?^```[ \t]*$", re.M | re.S)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]\n]*\]\(([^()\s]+)\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.M)


def prose(page: Path) -> str:
    """The page without code: fenced blocks and code spans hold no links."""
    return CODE_SPAN.sub("", FENCED.sub("", page.read_text()))


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives the page's headings: lower case, punctuation dropped, spaces
    as hyphens, a repeated one numbered -1, -2..."""
    seen: dict[str, int] = {}
    for heading in HEADING.findall(FENCED.sub("", page.read_text())):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        if count:
            seen[f"{slug}-{count}"] = 1
    return set(seen)


def relative_links(page: Path) -> list[str]:
    return [t for t in LINK.findall(prose(page)) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def test_pages_have_relative_links_to_check():
    assert len(PAGES) >= 10
    assert all(relative_links(page) for page in (README, REPO / "CONTRIBUTING.md"))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page):
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading with that anchor")
    assert broken == []


def test_readme_is_short():
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES


def test_readme_links_every_docs_page():
    linked = {(REPO / t.partition("#")[0]).resolve() for t in relative_links(README)}
    assert [p.name for p in PAGES[2:] if p.resolve() not in linked] == []


def test_readme_try_it_commands_are_the_ones_ci_runs():
    text = README.read_text()
    demo = (
        "    bash scripts/setup.sh && .venv/bin/snapaudit scan --demo --format html "
        "-o report.html --fail-on never\n"
    )
    assert demo in text
    assert "\n    bash scripts/test.sh\n" in text
    assert "\nbash scripts/test.sh\n" in (REPO / ".ci" / "run").read_text()


def test_usage_names_every_command_and_option():
    """docs/usage.md is the full reference; fix's options may be on its own page. An option is
    named by any of its spellings (`-c` or `--connect`); `--no-X` is named on its own."""
    usage = (REPO / "docs" / "usage.md").read_text()
    fix_mode = (REPO / "docs" / "fix-mode.md").read_text()

    def named(spellings: list[str], text: str) -> bool:
        return any(re.search(rf"(?<![\w-]){re.escape(s)}(?![\w-])", text) for s in spellings)

    missing = []
    for name, command in typer.main.get_command(app).commands.items():
        if f"snapaudit {name}" not in usage:
            missing.append(name)
        text = usage + fix_mode if name == "fix" else usage
        for param in command.params:
            for spellings in (param.opts, param.secondary_opts):
                if spellings and spellings[0].startswith("-") and not named(spellings, text):
                    missing.append(f"{name} {spellings[0]}")
    assert missing == []


def test_the_plugin_example_is_a_rule():
    page = (REPO / "docs" / "plugins.md").read_text()
    code = re.search(r"```python\n(.*?)```", page, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "docs/plugins.md", "exec"), namespace)
    example = namespace["acme_description"]
    assert (example.code, example.name, example.scope) == (
        "ACME001",
        "acme-description",
        "snapshot",
    )


def test_speed_claims_are_measured_ranges_with_their_command():
    """A "times faster" claim is a range whose ends bench/RESULTS.md records, with the command
    that measures it: never a round "over N times"."""
    results = (REPO / "bench" / "RESULTS.md").read_text()
    claims = 0
    for page in PAGES:
        text = re.sub(r"\s+", " ", page.read_text())
        assert not re.search(r"over \d+ times", text), page
        for low, high in re.findall(r"(\d+) to (\d+) times faster", text):
            claims += 1
            for ratio in (low, high):
                assert re.search(rf"\b{ratio}(\.\d+)?x", results), (page, ratio)
            assert "python -m bench.scan_speed --domains 1000 --snapshots 10" in text, page
    assert claims
