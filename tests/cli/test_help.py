"""`--help` as a terminal 80 columns wide shows it: every line fits, every placeholder is a
word (FILE, RULES) or the choices themselves ([error|warning|info|never]) and never typer's
types (<bool>, <path>, <list[str]>, {rule}), and `scan --help` lists the exit codes."""

from __future__ import annotations

import os
import re
import subprocess

import pytest
import typer

from auditor.cli.app import app
from tests.helpers import SNAPAUDIT

ROOT = typer.main.get_command(app)
COMMANDS = list(ROOT.commands)
# An option's placeholder: a word in capitals (FILE, FORMAT[:FILE], FILE|DIR), or its choices.
PLACEHOLDER = re.compile(r"[A-Z][A-Z.]*(\[:[A-Z]+\]|\|[A-Z]+)?|\[[a-z]+(\|[a-z]+)+\]")


def shown(*args: str, columns: int = 80) -> str:
    proc = subprocess.run(
        [SNAPAUDIT, *args, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": str(columns)},
    )
    assert (proc.returncode, proc.stderr) == (0, "")
    return proc.stdout


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_fits_80_columns_and_shows_no_types(command: str):
    text = shown(*filter(None, [command]))
    assert [line for line in text.splitlines() if len(line) > 80] == []
    assert re.findall(r"<[^<>\s]*>|\{[^{}\s]*\}|\blist\[", text) == []
    options = [
        p for p in (ROOT.commands[command] if command else ROOT).params if p.opts[0][0] == "-"
    ]
    for param in options:
        if param.is_flag:  # a flag shows no placeholder: its names say it all
            assert param.metavar is None
        else:
            assert PLACEHOLDER.fullmatch(param.metavar or ""), (param.opts, param.metavar)
            # Whole on the line that names the option: choices are never split.
            shown_as = f"{max(param.opts, key=len)} {param.metavar}"
            assert [line for line in text.splitlines() if shown_as in line], shown_as


def test_scan_help_reads_at_80_columns_and_lists_the_exit_codes():
    text = shown("scan")
    lines = text.splitlines()
    assert len(lines) <= 64
    assert "  --fail-on [error|warning|info|never]" in lines
    # Every description starts at column 34, beside its option or below it: 44 columns wide.
    for line in lines[lines.index("Options:") + 1 :]:
        if not line.startswith("  -"):
            assert re.match(" {34}[^ ]", line), line
        elif len(line) > 34 and line[32:34] == "  ":
            assert line[34] != " ", line
    status = lines.index("  Exit status:")
    codes = re.findall(r"^    (\d+)  ", "\n".join(lines[status + 1 :]), flags=re.M)
    assert codes == ["0", "1", "2", "3", "130", "143"]
    # Paths are wrapped, never cut off, whatever the width.
    for columns in (80, 100, 200):
        assert "/etc/snapaudit/config.toml." in shown("scan", columns=columns)
