"""Where a rendered report goes: a file (written atomically) or standard output."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from auditor.model import ScanResult


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
