"""`snapaudit fix`: its options, one call into fix mode (auditor.fix.orchestrate), its output."""

from __future__ import annotations

import contextlib
import enum
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from auditor.cli import exits
from auditor.cli.parsing import one_of

DEFAULT_STATE_DIR = "/var/lib/snapaudit/fix"
INTERNAL_RULES = ("SNAP001", "SNAP002")
Format = enum.StrEnum("Format", ["text", "json"])

# The options, as `snapaudit fix --help` shows them.
CONNECT = typer.Option("--connect", "-c", metavar="URI", help="libvirt URI (read-write, local).")
DOMAIN = typer.Option(
    "--domain",
    metavar="NAME",
    help="Domain to convert (repeatable). Default: every domain with internal snapshots.",
)
FORMAT = typer.Option("--format", "-f", metavar=one_of(Format), help="Output format.")
APPLY = typer.Option("--apply", help="Convert. Without it only the plan is printed.")
KEEP = typer.Option(
    "--keep-originals/--remove-originals",
    help="Keep the original images (default), or remove them once all is converted.",
)
DROP_MEMORY = typer.Option(
    "--drop-memory", help="Convert snapshots with internal memory state as disk-only snapshots."
)
TARGET = typer.Option(
    "--target-dir",
    metavar="DIR",
    file_okay=False,
    help="Put new images here, not beside the originals.",
)
STATE = typer.Option(
    "--state-dir",
    metavar="DIR",
    envvar="SNAPAUDIT_STATE_DIR",
    file_okay=False,
    help="Where journals and locks live.",
)
RESUME = typer.Option("--resume", metavar="JOURNAL", dir_okay=False, help="Finish a conversion.")
ROLLBACK = typer.Option(
    "--rollback", metavar="JOURNAL", dir_okay=False, help="Undo a conversion exactly."
)


def fix(
    connect: Annotated[str | None, CONNECT] = None,
    domains: Annotated[list[str] | None, DOMAIN] = None,
    output_format: Annotated[Format, FORMAT] = Format.text,
    apply: Annotated[bool, APPLY] = False,
    keep_originals: Annotated[bool, KEEP] = True,
    drop_memory: Annotated[bool, DROP_MEMORY] = False,
    target_dir: Annotated[Path | None, TARGET] = None,
    state_dir: Annotated[Path, STATE] = Path(DEFAULT_STATE_DIR),
    resume: Annotated[Path | None, RESUME] = None,
    rollback: Annotated[Path | None, ROLLBACK] = None,
) -> None:
    """Recreate internal snapshots as external ones, losing nothing (dry run by default).

    Exit 0 when everything is planned (or done); 1 when something is refused, the rest
    planned or done; 2 on a usage or configuration error (a --domain the host does not have,
    a read-only or remote connection, an unreadable journal); 3 when a conversion failed
    partway (its journal tells how to resume or roll back) or the host could not be read."""
    if resume and rollback:
        exits.fail(exits.USAGE, "--resume and --rollback cannot be combined")
    journal = resume or rollback
    if journal is not None:  # (a Path is never false)
        if domains or apply or drop_memory or target_dir or not keep_originals:
            exits.fail(
                exits.USAGE, "--resume and --rollback take only a journal (and -c, --format)"
            )
        _journal_command(journal, connect, output_format, rollback=bool(rollback))
    from auditor.fix.orchestrate import Conversion
    from auditor.fix.plan import Options

    options = Options(drop_memory=drop_memory, remove_originals=not keep_originals)
    target = str(target_dir.resolve()) if target_dir else None
    asked = Conversion(options, apply, target, state_dir.absolute())
    _plan_command(connect, domains or [], output_format, asked)


def _plan_command(uri: str | None, names: list[str], output_format: Format, asked) -> None:
    from auditor.fix import orchestrate
    from auditor.pipeline import domains_with_findings
    from auditor.reports import fixplan

    with _ended_early():
        conn, host = orchestrate.open_host(uri)
    text = output_format is Format.text
    outcomes = []
    with contextlib.closing(conn):
        if unknown := orchestrate.undefined(conn, names):
            exits.fail(exits.USAGE, f"--domain {unknown[0]!r}: no such domain on {host}")
        names = list(dict.fromkeys(names))
        if not names:  # every domain the audit finds internal snapshots in
            names, error = domains_with_findings(host, INTERNAL_RULES)
            if error:
                exits.fail(exits.FAILED, f"cannot scan {host}: {error}")
        if text:
            _out(fixplan.header(host, apply=asked.apply))
        for outcome in orchestrate.convert(conn, host, names, asked, exits.error, fixplan.describe):
            outcomes.append(outcome)
            if text:
                _out(fixplan.render_domain(outcome))
    if text:
        _out(fixplan.summary(outcomes))
    else:
        _out(fixplan.render_json(host, outcomes, apply=asked.apply))
    if any(o.result == "failed" for o in outcomes):
        raise typer.Exit(exits.FAILED)
    refused = any(o.plan.status == "refused" for o in outcomes)
    raise typer.Exit(exits.REFUSED if refused else exits.OK)


def _journal_command(path: Path, uri: str | None, output_format: Format, *, rollback: bool):
    from auditor.fix import orchestrate
    from auditor.reports import fixplan

    with _ended_early():
        host, outcome = orchestrate.from_journal(path, uri, exits.error, fixplan.describe, rollback)
    if output_format is Format.json:
        _out(fixplan.render_json(host, [outcome], apply=True))
    else:
        _out(fixplan.render_finished(outcome))
    raise typer.Exit(exits.FAILED if outcome.result == "failed" else exits.OK)


@contextlib.contextmanager
def _ended_early() -> Iterator[None]:
    """What ends a run before any domain: its one line, and its exit code."""
    from auditor.fix.domain_lock import LockBusy
    from auditor.fix.gather import ConnectionRefused
    from auditor.fix.journal import JournalError
    from auditor.fix.orchestrate import CannotConnect

    try:
        yield
    except (ConnectionRefused, JournalError) as exc:
        exits.fail(exits.USAGE, str(exc))
    except CannotConnect as exc:
        exits.fail(exits.FAILED, str(exc))
    except LockBusy as exc:
        exits.fail(exits.REFUSED, str(exc))


def _out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()
