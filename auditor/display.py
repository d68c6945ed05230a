"""How values read in text for people: exceptions as one line, terminal-safe strings and
sizes. Shared by every stage that writes for people (reports, fix plans, error lines)."""

from __future__ import annotations

import re

# C0 and C1 controls drive the terminal; the bidi embedding, override and isolate controls
# reorder what it shows (a name can then read as something it is not).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def clean(text: str) -> str:
    """Names come from hosts and files: escape control characters (`\\x1b`, `\\u202e`) so
    none can drive or reorder the terminal."""
    return _CONTROL.sub(_escape, text)


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def human_size(size: int | None) -> str:
    """Bytes in binary units, one decimal (`1.5 MiB`); `?` when unknown."""
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def one_line(exc: BaseException) -> str:
    """The exception's first line of text, prefixed with its type unless it is libvirt's."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    if type(exc).__name__ == "libvirtError":
        return text or "libvirt error"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
