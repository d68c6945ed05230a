"""Report formats. Each module has `render(result, *, color=False) -> str`, and a format whose
reports grow large also `chunks(result, *, color=False)`, the same text in pieces; FORMATS
maps the name a user types to the module that renders it."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator

FORMATS = {
    "text": "auditor.reports.text",
    "json": "auditor.reports.json",
    "html": "auditor.reports.html",
    "sarif": "auditor.reports.sarif",
    "junit": "auditor.reports.junit",
    "prometheus": "auditor.reports.prometheus",
}

# The file extension each format's reports are known by: a report written to r.html is HTML
# unless a format is given, and then it must be HTML.
EXTENSIONS = {
    ".txt": "text",
    ".json": "json",
    ".html": "html",
    ".sarif": "sarif",
    ".xml": "junit",
    ".prom": "prometheus",
}


def render(format_name: str, result, *, color: bool = False) -> str:
    # Imported on demand: the HTML reporter pulls in Jinja2, which a JSON gate never needs.
    return importlib.import_module(FORMATS[format_name]).render(result, color=color)


def render_pieces(format_name: str, result, *, color: bool = False) -> Iterable[str]:
    """The report as pieces of text to write one after the other."""
    module = importlib.import_module(FORMATS[format_name])
    if hasattr(module, "chunks"):
        return module.chunks(result, color=color)
    return (module.render(result, color=color),)


def in_pieces(lines: Iterable[str], batch: int) -> Iterator[str]:
    """LINES as pieces of text of BATCH lines, each line ended: a long report is written
    piece by piece, never held whole."""
    pending: list[str] = []
    for line in lines:
        pending.append(line)
        if len(pending) >= batch:
            yield "\n".join(pending) + "\n"
            pending.clear()
    if pending:
        yield "\n".join(pending) + "\n"
