"""--as-of TIME, or SNAPAUDIT_AS_OF: the moment `scan` and `config` judge by (snapshot ages,
the report's date, whether a waiver has expired), for reproducible runs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import typer

from auditor.cli import exits

VARIABLE = "SNAPAUDIT_AS_OF"


def option(text: str) -> Any:
    """A command's --as-of option, its help TEXT saying what TIME moves."""
    return typer.Option("--as-of", metavar="TIME", envvar=VARIABLE, help=text)


def moment(text: str) -> datetime:
    """--as-of's TIME: @SECONDS, or an ISO 8601 date or time (UTC unless it says)."""
    try:
        if text.startswith("@"):
            return datetime.fromtimestamp(float(text[1:]), tz=UTC)
        when = datetime.fromisoformat(text)
    except (ValueError, OverflowError, OSError):
        exits.fail(exits.USAGE, f"--as-of {text!r}: not an ISO 8601 time or @SECONDS")
    return when if when.tzinfo else when.replace(tzinfo=UTC)
