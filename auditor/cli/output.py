"""Where a rendered report goes: a file (written atomically) or standard output, and the
format a file's name asks for."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from auditor.cli import exits
from auditor.model import ScanResult


def format_for(path: Path, given: str | None, default: str) -> str:
    """The format of a report written to PATH: GIVEN (--format), which PATH's extension must
    not contradict (a usage error); else the format the extension is known for; else DEFAULT."""
    from auditor.reports import EXTENSIONS

    named = EXTENSIONS.get(path.suffix.lower())
    if given is not None and named is not None and named != given:
        exits.fail(
            exits.USAGE, f"{path}: the extension {path.suffix} is for {named} reports, not {given}"
        )
    return given or named or default


def emit(name: str, path: Path | None, result: ScanResult) -> None:
    """Render RESULT as NAME to PATH (atomically), or to stdout; colour only for text on a
    terminal. A report made in pieces is written piece by piece, never held whole."""
    from auditor.reports import render_pieces
    from auditor.safefs import write_file

    color = path is None and name == "text" and sys.stdout.isatty()
    pieces = render_pieces(name, result, color=color and "NO_COLOR" not in os.environ)
    if path is None:
        for piece in pieces:
            sys.stdout.write(piece)
    else:
        write_file(path, pieces)
