"""Exit codes, part of the contract with CI gates and scripts, and the one way the command
line prints an error."""

from __future__ import annotations

from typing import NoReturn

import typer

from auditor.display import clean

OK = 0
FINDINGS = 1  # scan, diff: a finding at or above --fail-on
REFUSED = 1  # fix: something was refused, the rest planned or done
EXPIRED = 1  # config: the configuration is valid, but a waiver in it has expired
USAGE = 2  # bad arguments, configuration, report or journal
INCOMPLETE = 3  # scan, diff: a host, snapshot or rule could not be audited
FAILED = 3  # fix: a conversion failed partway, or the host could not be read
# Set by auditor.stopping, as a shell reports a process a signal killed (128 + the signal):
INTERRUPTED = 130  # stopped by SIGINT (Ctrl-C): a scan writes no report, fix stops between steps
TERMINATED = 143  # stopped by SIGTERM, likewise


def error(message: str) -> None:
    """One line on stderr, control characters escaped."""
    typer.echo(f"snapaudit: {clean(message)}", err=True)


def fail(code: int, message: str) -> NoReturn:
    error(message)
    raise typer.Exit(code)
