"""How values read in text for people: exceptions as one line, terminal-safe strings and
sizes. Shared by every stage that writes for people (reports, fix plans, error lines)."""

from __future__ import annotations

import re
import sys

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


def plural(count: int, noun: str) -> str:
    """A count and its noun, as English writes it: `1 warning`, `2 warnings`."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


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


class Problem(Exception):
    """An error whose message is written for people, as one line: `one_line` shows it as it
    is, with no Python class name."""


def one_line(exc: BaseException) -> str:
    """An exception as one line, the one way the tool shows one. What it expects to go wrong
    says so in its own words: a Problem as its message, an OS error as `FILE: reason`,
    libvirt's error as the first line of its message. Anything else is a bug somewhere, and
    its type is the first clue: `KeyError: 'x'`."""
    if isinstance(exc, Problem):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    if _from_libvirt(exc):
        return text or "libvirt error"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _from_libvirt(exc: BaseException) -> bool:
    # Not imported here: the reports that use this module never load libvirt, and an error of
    # libvirt's can only exist once something else has.
    libvirt = sys.modules.get("libvirt")
    return libvirt is not None and isinstance(exc, libvirt.libvirtError)
