"""`snapaudit fix`: wires findings, facts, planning, journaled execution and output together.

Exit codes: 0 everything planned (or done); 1 something refused, the rest planned or done;
2 usage or configuration error (a read-only or remote connection, an unreadable journal);
3 a conversion failed partway (its journal tells how to resume or roll back) or the host
could not be read.
"""

from __future__ import annotations

import contextlib
import enum
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from auditor.cli import exits

if TYPE_CHECKING:
    import libvirt

    from auditor.fix.plan import Options, Outcome

DEFAULT_STATE_DIR = "/var/lib/snapaudit/fix"
INTERNAL_RULES = ("SNAP001", "SNAP002")


class Format(enum.StrEnum):
    text = "text"
    json = "json"


def fix(
    connect: Annotated[
        str | None,
        typer.Option("--connect", "-c", metavar="URI", help="libvirt URI (read-write, local)."),
    ] = None,
    domains: Annotated[
        list[str] | None,
        typer.Option(
            "--domain",
            metavar="NAME",
            help="Domain to convert (repeatable). Default: every domain with internal snapshots.",
        ),
    ] = None,
    output_format: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = (
        Format.text
    ),
    apply: Annotated[
        bool, typer.Option("--apply", help="Convert. Without it only the plan is printed.")
    ] = False,
    keep_originals: Annotated[
        bool,
        typer.Option(
            "--keep-originals/--remove-originals",
            help="Keep the original images (default), or remove them once all is converted.",
        ),
    ] = True,
    drop_memory: Annotated[
        bool,
        typer.Option(
            "--drop-memory",
            help="Convert snapshots with internal memory state as disk-only snapshots.",
        ),
    ] = False,
    target_dir: Annotated[
        Path | None,
        typer.Option(
            "--target-dir", file_okay=False, help="Put new images here, not beside the originals."
        ),
    ] = None,
    state_dir: Annotated[
        Path,
        typer.Option(
            "--state-dir",
            envvar="SNAPAUDIT_STATE_DIR",
            file_okay=False,
            help="Where journals and locks live.",
        ),
    ] = Path(DEFAULT_STATE_DIR),
    resume: Annotated[
        Path | None,
        typer.Option("--resume", metavar="JOURNAL", dir_okay=False, help="Finish a conversion."),
    ] = None,
    rollback: Annotated[
        Path | None,
        typer.Option(
            "--rollback", metavar="JOURNAL", dir_okay=False, help="Undo a conversion exactly."
        ),
    ] = None,
) -> None:
    """Recreate internal snapshots as external ones, losing nothing (dry run by default)."""
    if resume and rollback:
        exits.fail(exits.USAGE, "--resume and --rollback cannot be combined")
    if resume or rollback:
        if domains or apply or drop_memory or target_dir or not keep_originals:
            exits.fail(
                exits.USAGE, "--resume and --rollback take only a journal (and -c, --format)"
            )
        # Absolute: the commands that messages name must work from any directory.
        journal = (resume or rollback).absolute()
        _journal_command(journal, connect, output_format, rollback=bool(rollback))
    from auditor.fix.plan import Options

    options = Options(drop_memory=drop_memory, remove_originals=not keep_originals)
    target = str(target_dir.resolve()) if target_dir else None
    state = state_dir.absolute()
    _plan_command(connect, domains or [], output_format, options, apply, target, state)


def _plan_command(
    uri: str | None,
    names: list[str],
    output_format: Format,
    options: Options,
    apply: bool,
    target_dir: str | None,
    state_dir: Path,
) -> None:
    import libvirt

    from auditor.display import one_line
    from auditor.fix.gather import ConnectionRefused, connect
    from auditor.reports import fixplan

    try:
        conn = connect(uri)
    except ConnectionRefused as exc:
        exits.fail(exits.USAGE, str(exc))
    except libvirt.libvirtError as exc:
        exits.fail(exits.FAILED, f"cannot connect to {uri or 'the default URI'}: {one_line(exc)}")
    host = uri or conn.getURI()
    text = output_format is Format.text
    if apply:  # what a killed fix left, whether or not this run serves anything over NBD
        from auditor.fix.images import remove_stale_exports

        remove_stale_exports()
    try:
        names = list(dict.fromkeys(names)) or _domains_with_internal_snapshots(host)
        if text:
            _out(fixplan.header(host, apply=apply))
        outcomes = []
        for name in names:
            outcome = _one_domain(conn, host, name, options, apply, target_dir, state_dir)
            outcomes.append(outcome)
            if text:
                _out(fixplan.render_domain(outcome))
    finally:
        conn.close()
    _out(fixplan.summary(outcomes) if text else fixplan.render_json(host, outcomes, apply=apply))
    if any(o.result == "failed" for o in outcomes):
        raise typer.Exit(exits.FAILED)
    if any(o.plan.status == "refused" for o in outcomes):
        raise typer.Exit(exits.REFUSED)
    raise typer.Exit(exits.OK)


def _domains_with_internal_snapshots(host: str) -> list[str]:
    """The domains the audit finds internal snapshots in (SNAP001, SNAP002)."""
    from auditor.engine.registry import load_rules
    from auditor.pipeline import audit_hosts

    rules, _ = load_rules()
    internal = [r for r in rules if r.code in INTERNAL_RULES]
    result = audit_hosts([host], internal, check_files=False)
    (scan,) = result.hosts
    if scan.host.error:
        exits.fail(exits.FAILED, f"cannot scan {host}: {scan.host.error}")
    return sorted({f.domain for f in result.findings})


def _one_domain(
    conn: libvirt.virConnect,
    host: str,
    name: str,
    options: Options,
    apply: bool,
    target_dir: str | None,
    state_dir: Path,
) -> Outcome:
    import libvirt

    from auditor.fix.domain_lock import LockBusy, LockError, domain_lock
    from auditor.fix.execute import FixFailed, run
    from auditor.fix.gather import read_domain
    from auditor.fix.journal import ROLLING_BACK, Journal, JournalError, unfinished
    from auditor.fix.names import journal_name
    from auditor.fix.plan import DomainPlan, Outcome, quoted
    from auditor.fix.planner import plan_domain
    from auditor.reports.fixplan import describe

    try:
        dom = conn.lookupByName(name)
    except libvirt.libvirtError as exc:
        return Outcome(DomainPlan(host, name, "", refusals=(_reason(exc),)))
    uuid = dom.UUIDString()
    if not apply:
        try:
            facts = read_domain(conn, dom, host=host, target_dir=target_dir)
        except libvirt.libvirtError as exc:
            return Outcome(DomainPlan(host, name, uuid), "failed", error=_reason(exc))
        return Outcome(plan_domain(facts, options))
    journal = None
    try:
        # Plan under the lock, so that what another fix did before we got it is seen.
        with domain_lock(uuid):
            for old in unfinished(state_dir, uuid):
                option = "--rollback" if old.state == ROLLING_BACK else "--resume"
                why = f"a conversion of it did not finish: run snapaudit fix {option} {old.path}"
                return Outcome(DomainPlan(host, name, uuid, refusals=(why,)))
            facts = read_domain(conn, dom, host=host, target_dir=target_dir)
            plan = plan_domain(facts, options)
            if plan.status != "ready":
                return Outcome(plan)
            state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            path = state_dir / journal_name(name, uuid, datetime.now(UTC))
            journal = Journal.create(path, host, plan)
            exits.error(f"domain {quoted(name)}: journal {path}")  # error() escapes it
            with _stopped_names(f"snapaudit fix --resume {path}"):
                run(conn, journal, _progress, describe)
            return Outcome(plan, "converted", str(path))
    except LockBusy as exc:
        return Outcome(DomainPlan(host, name, uuid, refusals=(str(exc),)))
    except (FixFailed, JournalError, LockError, libvirt.libvirtError, OSError) as exc:
        plan = journal.plan if journal else DomainPlan(host, name, uuid)
        where = str(journal.path) if journal else None
        return Outcome(plan, "failed", where, _reason(exc, journal, "--resume"))


def _reason(exc: BaseException, journal=None, option: str = "--resume") -> str:
    """One line, no Python class names; a journal that could not be written says what then."""
    from auditor.display import one_line
    from auditor.fix.execute import FixFailed
    from auditor.fix.journal import JournalError

    if isinstance(exc, OSError) and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    elif type(exc).__name__ in ("libvirtError", "ImageError"):
        text = one_line(exc).removeprefix("ImageError: ")
    else:
        text = str(exc)
    if journal is not None and not isinstance(exc, FixFailed) and "snapaudit fix --" not in text:
        # The one command that applies: the same one again, once the cause is solved (when
        # it cannot finish, it names the other). A FixFailed already says what applies.
        solved = "the journal can be written" if isinstance(exc, JournalError) else "that is solved"
        text += f"; once {solved}, run snapaudit fix {option} {journal.path}"
    return text


def _journal_command(path: Path, uri: str | None, output_format: Format, *, rollback: bool):
    import libvirt

    from auditor.display import clean, one_line
    from auditor.fix.domain_lock import LockBusy, LockError, domain_lock, journal_lock
    from auditor.fix.execute import FixFailed
    from auditor.fix.gather import ConnectionRefused, connect
    from auditor.fix.images import ImageError, remove_stale_exports
    from auditor.fix.journal import Journal, JournalError
    from auditor.fix.plan import Outcome, quoted
    from auditor.reports import fixplan

    try:
        journal = Journal.load(path)
    except JournalError as exc:
        exits.fail(exits.USAGE, str(exc))
    try:
        conn = connect(uri or journal.uri)
    except ConnectionRefused as exc:
        exits.fail(exits.USAGE, str(exc))
    except libvirt.libvirtError as exc:
        exits.fail(exits.FAILED, f"cannot connect to {uri or journal.uri}: {one_line(exc)}")
    plan = journal.plan
    what = "rolled back" if rollback else "converted"
    try:
        with domain_lock(plan.uuid), journal_lock(path):
            remove_stale_exports()
            # Read again under the lock: another fix may have been writing it until now.
            journal = Journal.load(path, repair=True)
            option = "--rollback" if rollback else "--resume"
            with _stopped_names(f"snapaudit fix {option} {path}"):
                _journal_step(conn, journal, rollback=rollback)
        outcome = Outcome(plan, what, str(path))
    except LockBusy as exc:
        exits.fail(exits.REFUSED, str(exc))
    except (FixFailed, JournalError, LockError, ImageError, libvirt.libvirtError, OSError) as exc:
        option = "--rollback" if rollback else "--resume"
        outcome = Outcome(plan, "failed", str(path), _reason(exc, journal, option))
    finally:
        conn.close()
    if output_format is Format.json:
        _out(fixplan.render_json(journal.uri, [outcome], apply=True))
    elif outcome.result == "failed":
        _out(f"domain {clean(quoted(plan.domain))}: FAILED: {outcome.error}\n")
    else:
        _out(f"domain {clean(quoted(plan.domain))}: {what}; journal {path}\n")
    raise typer.Exit(exits.FAILED if outcome.result == "failed" else exits.OK)


def _journal_step(conn: libvirt.virConnect, journal, *, rollback: bool) -> None:
    from auditor.fix.execute import check_finished, run
    from auditor.fix.journal import FINISHED
    from auditor.fix.rollback import rollback as roll_back
    from auditor.reports import fixplan

    if rollback:
        roll_back(conn, journal, _progress)
    elif journal.state == FINISHED:
        exits.error(f"{journal.path} had already finished; checking its images")
        check_finished(conn, journal)
    else:
        run(conn, journal, _progress, fixplan.describe)


@contextlib.contextmanager
def _stopped_names(command: str) -> Iterator[None]:
    """A stop signal ends the run between two steps: say which command finishes the job."""
    from auditor.stopping import Stopped

    try:
        yield
    except Stopped:
        exits.error(f"stopped between two steps; to finish, run {command}")
        raise


def _progress(line: str) -> None:
    exits.error(line)


def _out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()
