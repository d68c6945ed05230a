"""Turning exceptions into the one-line reasons that reports and the terminal show."""

from __future__ import annotations


def one_line(exc: BaseException) -> str:
    """The exception's first line of text, prefixed with its type unless it is libvirt's."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    if type(exc).__name__ == "libvirtError":
        return text or "libvirt error"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
