"""A fix run from start to end, for the command line to print: `convert` plans (with APPLY,
converts) a host's domains one by one, and `from_journal` resumes or rolls back one
conversion. Each domain ends as an Outcome. What ends a run before any domain is raised:
ConnectionRefused or CannotConnect (the host), JournalError (the journal named), LockBusy
(another fix is working on the domain).

The rules of a run: a domain is planned under its lock, so that what another fix did before
it got the lock is seen; a domain with an unfinished journal is refused, naming the command
that finishes it; every failure names the one command that applies next.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import libvirt

from auditor.display import Problem, one_line
from auditor.fix.domain_lock import LockBusy, LockError, domain_lock, journal_lock
from auditor.fix.execute import Describe, FixFailed, Progress, check_finished, command, run
from auditor.fix.gather import connect, read_domain
from auditor.fix.images import ImageError, remove_stale_exports
from auditor.fix.journal import FINISHED, ROLLING_BACK, Journal, JournalError, unfinished
from auditor.fix.names import journal_name
from auditor.fix.plan import DomainPlan, Options, Outcome, quoted
from auditor.fix.planner import plan_domain
from auditor.fix.rollback import rollback as roll_back
from auditor.stopping import Stopped

# What fails a domain partway; its journal then tells how to resume or roll back.
_FAILURES = (FixFailed, JournalError, LockError, ImageError, libvirt.libvirtError, OSError)


class CannotConnect(Problem):
    """The host cannot be reached; the message says so, in one line."""


def open_host(uri: str | None) -> tuple[libvirt.virConnect, str]:
    """A read-write connection for fix mode, and the URI of the host it reaches."""
    conn = _connect(uri)
    return conn, uri or conn.getURI()


def undefined(conn: libvirt.virConnect, names: Iterable[str]) -> list[str]:
    """The NAMES that no domain of CONN has."""
    defined = {dom.name() for dom in conn.listAllDomains()}
    return [name for name in names if name not in defined]


@dataclass(frozen=True)
class Conversion:
    """What a convert run is asked: plan each domain with OPTIONS (with APPLY, convert it),
    new images in TARGET_DIR (None: beside their originals), journals in STATE_DIR."""

    options: Options
    apply: bool
    target_dir: str | None
    state_dir: Path


def convert(
    conn: libvirt.virConnect,
    host: str,
    names: Iterable[str],
    asked: Conversion,
    progress: Progress,
    describe: Describe,
) -> Iterator[Outcome]:
    """Each domain of NAMES as asked, one Outcome each as it ends."""
    if asked.apply:  # what a killed fix left, whether or not this run serves anything over NBD
        remove_stale_exports()
    for name in names:
        yield _one_domain(conn, host, name, asked, progress, describe)


def _one_domain(
    conn: libvirt.virConnect,
    host: str,
    name: str,
    asked: Conversion,
    progress: Progress,
    describe: Describe,
) -> Outcome:
    try:
        dom = conn.lookupByName(name)
    except libvirt.libvirtError as exc:
        return Outcome(DomainPlan(host, name, "", refusals=(failure(exc),)))
    uuid = dom.UUIDString()
    if not asked.apply:
        try:
            facts = read_domain(conn, dom, host=host, target_dir=asked.target_dir)
        except libvirt.libvirtError as exc:
            return Outcome(DomainPlan(host, name, uuid), "failed", error=failure(exc))
        return Outcome(plan_domain(facts, asked.options))
    journal = None
    try:
        # Plan under the lock, so that what another fix did before we got it is seen.
        with domain_lock(uuid):
            for old in unfinished(asked.state_dir, uuid):
                option = "--rollback" if old.state == ROLLING_BACK else "--resume"
                why = f"a conversion of it did not finish: run snapaudit fix {option} {old.path}"
                return Outcome(DomainPlan(host, name, uuid, refusals=(why,)))
            facts = read_domain(conn, dom, host=host, target_dir=asked.target_dir)
            plan = plan_domain(facts, asked.options)
            if plan.status != "ready":
                return Outcome(plan)
            asked.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            path = asked.state_dir / journal_name(name, uuid, datetime.now(UTC))
            journal = Journal.create(path, host, plan)
            progress(f"domain {quoted(name)}: journal {path}")
            with _how_to_finish(command(journal, "--resume"), progress):
                run(conn, journal, progress, describe)
            return Outcome(plan, "converted", str(path))
    except LockBusy as exc:
        return Outcome(DomainPlan(host, name, uuid, refusals=(str(exc),)))
    except _FAILURES as exc:
        plan = journal.plan if journal else DomainPlan(host, name, uuid)
        where = str(journal.path) if journal else None
        return Outcome(plan, "failed", where, failure(exc, journal, "--resume"))


def from_journal(
    path: Path, uri: str | None, progress: Progress, describe: Describe, rollback: bool
) -> tuple[str, Outcome]:
    """Resume the conversion journal PATH records (ROLLBACK: roll it back), on URI or the
    host the journal names; returns that host and the Outcome."""
    path = path.absolute()  # the commands that messages name must work from any directory
    journal = Journal.load(path)
    conn = _connect(uri or journal.uri)
    option = "--rollback" if rollback else "--resume"
    plan = journal.plan
    try:
        with domain_lock(plan.uuid), journal_lock(path):
            remove_stale_exports()
            # Read again under the lock: another fix may have been writing it until now.
            journal = Journal.load(path, repair=True)
            with _how_to_finish(command(journal, option), progress):
                if rollback:
                    roll_back(conn, journal, progress)
                elif journal.state == FINISHED:
                    progress(f"{journal.path} had already finished; checking its images")
                    check_finished(conn, journal)
                else:
                    run(conn, journal, progress, describe)
        outcome = Outcome(plan, "rolled back" if rollback else "converted", str(path))
    except _FAILURES as exc:
        outcome = Outcome(plan, "failed", str(path), failure(exc, journal, option))
    finally:
        conn.close()
    return journal.uri, outcome


def failure(exc: BaseException, journal: Journal | None = None, option: str = "--resume") -> str:
    """Why a domain failed, in one line; with its JOURNAL, the one command that applies then."""
    text = one_line(exc)
    if journal is not None and not isinstance(exc, FixFailed) and "snapaudit fix --" not in text:
        # The one command that applies: the same one again, once the cause is solved (when
        # it cannot finish, it names the other). A FixFailed already says what applies.
        solved = "the journal can be written" if isinstance(exc, JournalError) else "that is solved"
        text += f"; once {solved}, run {command(journal, option)}"
    return text


def _connect(uri: str | None) -> libvirt.virConnect:
    try:
        return connect(uri)
    except libvirt.libvirtError as exc:
        what = f"cannot connect to {uri or 'the default URI'}: {one_line(exc)}"
        raise CannotConnect(what) from None


@contextlib.contextmanager
def _how_to_finish(command_line: str, progress: Progress) -> Iterator[None]:
    """A stop signal ends the run between two steps: say which command finishes the job."""
    try:
        yield
    except Stopped:
        progress(f"stopped between two steps; to finish, run {command_line}")
        raise
