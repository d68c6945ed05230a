"""Runs a journaled plan, resumes it, or rolls it back.

Every step is idempotent or detectably complete, so a run killed at any point (the step it
was in half done, or done but not journaled) resumes by running that step again. Rollback
(rollback.py) does not trust the journal's list of done steps at all: it compares the host
with the original metadata the journal holds and repairs whatever differs.

The domain cannot run on its originals while they are converted: from the first step to the
last, fix holds QEMU's own image lock on them (image_hold.py), so `virsh start` fails, and it
checks that the domain is shut off before every step and after defining it. Before claiming
anything, a run checks that every image it created is still the file it created and that no
original changed since the plan; every failure names the one command that applies next.
"""

from __future__ import annotations

from collections.abc import Callable

import libvirt

from auditor import stopping
from auditor.display import Problem, one_line
from auditor.fix import faults, image_hold, images
from auditor.fix.gather import SECURE_DOMAIN
from auditor.fix.journal import FINISHED, ROLLED_BACK, ROLLING_BACK, Journal, file_id
from auditor.fix.plan import (
    CreateImage,
    CreateOverlay,
    DefineDomain,
    DomainPlan,
    DropSnapshotMetadata,
    RedefineSnapshot,
    RemoveOriginal,
    Step,
    VerifyImage,
    quoted,
)
from auditor.sources.xml.parser import parse_domain_disks, parse_snapshot

Progress = Callable[[str], None]
Describe = Callable[[Step], str]  # one line per step, for progress (the fix plan reporter's)
REDEFINE = libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE
CURRENT = libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT
METADATA_ONLY = libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY


class FixFailed(Problem):
    """A step failed or the host is not as the journal expects; the message is one line."""


def command(journal: Journal, option: str) -> str:
    return f"snapaudit fix {option} {journal.path}"


@stopping.at_step_boundaries  # SIGINT/SIGTERM stop between steps, never inside one
def run(conn: libvirt.virConnect, journal: Journal, progress: Progress, describe: Describe) -> None:
    """Run every step the journal has not recorded, then check the result on the host."""
    plan = journal.plan
    if journal.state == ROLLED_BACK:
        raise FixFailed(f"{journal.path} was rolled back; plan a new fix instead")
    if journal.state == ROLLING_BACK:
        raise FixFailed(f"a rollback of this conversion began; finish it: {_rollback(journal)}")
    dom = _domain(conn, plan)
    define_step = next(n for n, s in enumerate(plan.steps, 1) if isinstance(s, DefineDomain))
    if dom.isActive():
        raise FixFailed(_running(dom, plan, journal))
    try:
        with image_hold.no_writers(o.path for o in plan.originals):
            check_files(dom, journal)
            for number, step in enumerate(plan.steps, 1):
                if number in journal.done:
                    continue
                stopping.step_boundary()
                _guard(dom, journal, step, defined=define_step in journal.done)
                progress(f"[{number}/{len(plan.steps)}] {describe(step)}")
                try:
                    _run_step(conn, dom, journal, step)
                except (libvirt.libvirtError, images.ImageError, OSError) as exc:
                    raise FixFailed(
                        f"step {number} ({step.kind}) failed: {one_line(exc)}; once that is "
                        f"solved, run {command(journal, '--resume')}"
                    ) from None
                if isinstance(step, DefineDomain) and dom.isActive():
                    raise FixFailed(_running(dom, plan, journal))
                faults.reached(faults.STEP_DONE, number)
                journal.step_done(number)
                faults.reached(faults.STEP_JOURNALED, number)
            _check_converted(dom, journal)
            check_files(dom, journal)
    except image_hold.HoldError as exc:
        raise FixFailed(f"original image {exc}, then run {command(journal, '--resume')}") from None
    if journal.state != FINISHED:
        journal.finish()


def _rollback(journal: Journal) -> str:
    return command(journal, "--rollback")


def _running(dom: libvirt.virDomain, plan: DomainPlan, journal: Journal) -> str:
    """The domain runs while it is being converted: on which images, and what to do."""
    define = next(s for s in plan.steps if isinstance(s, DefineDomain))
    live = {d.name: d.source.path for d in parse_domain_disks(dom.XMLDesc(0)) if d.source}
    on_new = all(live.get(disk) == path for disk, path in define.sources.items())
    where = "its converted images" if on_new else "its original images"
    return (
        f"domain {plan.domain} is running (on {where}): shut it down, then run "
        f"{command(journal, '--resume')}"
    )


def _defined_on_new(dom: libvirt.virDomain, plan: DomainPlan) -> bool:
    define = next(s for s in plan.steps if isinstance(s, DefineDomain))
    now = {
        d.name: d.source.path for d in parse_domain_disks(dom.XMLDesc(SECURE_DOMAIN)) if d.source
    }
    return all(now.get(disk) == path for disk, path in define.sources.items())


def original_changed(original) -> bool:
    """Whether the file at an original's path was written or replaced since it was planned."""
    ident = file_id(original.path)
    if ident is None:
        return False  # gone: callers say what that means where they are
    replaced = original.inode and (ident[0], ident[1]) != (original.device, original.inode)
    return bool(replaced) or (ident[2], ident[3]) != (original.size, original.mtime_ns)


def check_finished(conn: libvirt.virConnect, journal: Journal) -> None:
    """--resume of a conversion that had finished: it claims nothing it did not check."""
    check_files(_domain(conn, journal.plan), journal, finished=True)


def check_files(dom: libvirt.virDomain, journal: Journal, *, finished: bool = False) -> None:
    """Every image a journaled step created is still the file it created (a top image may
    have been written once the domain is defined on it), and no original changed. FINISHED:
    a finished conversion, as a later --resume finds it (originals kept are left alone)."""
    plan = journal.plan
    define = next(s for s in plan.steps if isinstance(s, DefineDomain))
    defined = _defined_on_new(dom, plan)
    tops = set(define.sources.values())
    only_rollback = f"only {_rollback(journal)} applies"
    if finished:
        only_rollback = "that happened after the conversion finished: there is nothing to resume"
    for original in () if finished else plan.originals:
        if original_changed(original):
            raise FixFailed(
                f"original image {original.path} was written or replaced after the conversion "
                f"began, so the converted images are out of date: {only_rollback} (it keeps the "
                "original)"
            )
    made = {
        s.path: n for n, s in enumerate(plan.steps, 1) if isinstance(s, CreateImage | CreateOverlay)
    }
    for path, number in made.items():
        if number not in journal.done:
            continue
        ident, recorded = file_id(path), journal.created.get(path)
        if ident is None:
            raise FixFailed(f"image {path} that this conversion created is gone: {only_rollback}")
        if recorded is None:
            continue  # a journal from before identities were recorded
        if ident[:2] != recorded[:2]:
            raise FixFailed(
                f"{path} is no longer the image this conversion created: {only_rollback}"
            )
        if ident != recorded and not (defined and path in tops):
            raise FixFailed(
                f"image {path} that this conversion created was written to: {only_rollback}"
            )


def _domain(conn: libvirt.virConnect, plan: DomainPlan) -> libvirt.virDomain:
    try:
        return conn.lookupByUUIDString(plan.uuid)
    except libvirt.libvirtError as exc:
        raise FixFailed(f"domain {plan.domain} ({plan.uuid}): {one_line(exc)}") from None


def _guard(dom: libvirt.virDomain, journal: Journal, step: Step, *, defined: bool) -> None:
    """The plan holds only while nothing else touches the domain and its images. An original
    is removed only while the domain is shut off and defined on its new images, and the
    original is still exactly what was verified (its size and mtime as planned)."""
    plan = journal.plan
    for original in plan.originals:
        if file_id(original.path) is None:
            if isinstance(step, RemoveOriginal) or (plan.remove_originals and defined):
                continue  # removed by this very step, or an earlier one, before a crash
            raise FixFailed(
                f"original image {original.path} has disappeared: nothing can be converted "
                "or rolled back; restore it from a backup"
            )
        if original_changed(original):
            raise FixFailed(
                f"original image {original.path} was written or replaced after the conversion "
                f"began: only {_rollback(journal)} applies (it keeps the original)"
            )
    if dom.isActive():
        raise FixFailed(_running(dom, plan, journal))
    if isinstance(step, RemoveOriginal) and not _defined_on_new(dom, plan):
        raise FixFailed(
            f"domain {plan.domain} is not defined on its converted images; not removing "
            f"{step.path}: run {_rollback(journal)}"
        )
    if isinstance(step, RemoveOriginal):
        _check_converted(dom, journal)  # an original goes only once all is as planned
    if not defined and not _unchanged_or_ours(dom.XMLDesc(SECURE_DOMAIN), journal):
        raise FixFailed(
            f"the definition of domain {plan.domain} changed since the plan was made: "
            f"run {_rollback(journal)}, then fix again"
        )


def _unchanged_or_ours(xml: str, journal: Journal) -> bool:
    """The original definition, or the one define-domain makes (it ran, then we died)."""
    if xml == journal.restore.domain_xml:
        return True
    define = next(s for s in journal.plan.steps if isinstance(s, DefineDomain))
    now = {d.name: d.source.path for d in parse_domain_disks(xml) if d.source is not None}
    return all(now.get(disk) == path for disk, path in define.sources.items())


def _run_step(
    conn: libvirt.virConnect, dom: libvirt.virDomain, journal: Journal, step: Step
) -> None:
    match step:
        case CreateImage():
            _replace_ours(journal, step.path)
            source = (step.source, step.source_format, step.tag)
            created = lambda part: journal.image_created(step.path, part)  # noqa: E731
            images.create_image(step.path, *source, step.backing, step.cluster_size, created)
        case CreateOverlay():
            _replace_ours(journal, step.path)
            created = lambda part: journal.image_created(step.path, part)  # noqa: E731
            images.create_overlay(step.path, step.backing, created)
        case VerifyImage():
            images.verify_image(step.path, step.source, step.source_format, step.tag)
        case DropSnapshotMetadata():
            snap = _snapshot(dom, step.snapshot)
            if snap is not None:
                snap.delete(METADATA_ONLY)
        case RedefineSnapshot():
            existing = _snapshot(dom, step.snapshot)
            if existing is None:
                dom.snapshotCreateXML(step.xml, REDEFINE | (CURRENT if step.current else 0))
            elif not _is_redefined(existing, step):
                raise FixFailed(
                    f"snapshot {quoted(step.snapshot)} exists but is not the external snapshot "
                    f"this journal defines: only {_rollback(journal)} applies"
                )
        case DefineDomain():
            conn.defineXML(step.xml)
        case RemoveOriginal():
            images.remove_file(step.path)


def _replace_ours(journal: Journal, path: str) -> None:
    """A create step run again replaces only what an earlier attempt of it made."""
    ident = file_id(path)
    if ident is not None and journal.created.get(path) != ident:
        raise FixFailed(
            f"{path} exists but is not an image this conversion created; not replacing it: "
            f"move it away, then run {command(journal, '--resume')}"
        )


def _snapshot(dom: libvirt.virDomain, name: str) -> libvirt.virDomainSnapshot | None:
    try:
        return dom.snapshotLookupByName(name, 0)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT:
            return None
        raise


def _is_redefined(snap: libvirt.virDomainSnapshot, step: RedefineSnapshot) -> bool:
    model = parse_snapshot(snap.getXMLDesc(0), host="", domain="", domain_uuid="", current=False)
    disks = {d.name: d for d in model.disks}
    return all(
        (disk := disks.get(name)) is not None
        and disk.mode == "external"
        and disk.overlay is not None
        and disk.overlay.path == step.overlays[name]
        and disk.state_image is not None
        and disk.state_image.path == state
        for name, state in step.states.items()
    )


def _check_converted(dom: libvirt.virDomain, journal: Journal) -> None:
    try:
        check_converted(dom, journal.plan)
    except FixFailed as exc:  # changed by someone else: the journal can restore it
        if any(file_id(o.path) is None for o in journal.plan.originals):
            raise FixFailed(f"{exc}, changed after the originals were removed") from None
        raise FixFailed(f"{exc}: only {_rollback(journal)} applies") from None


def check_converted(dom: libvirt.virDomain, plan: DomainPlan) -> None:
    """Read the result back from libvirt: every snapshot external on its new images, the
    same current snapshot, the domain on its new top images."""
    for step in plan.steps:
        if isinstance(step, RedefineSnapshot):
            name, snap = quoted(step.snapshot), _snapshot(dom, step.snapshot)
            if snap is None or not _is_redefined(snap, step):
                raise FixFailed(f"snapshot {name} is not the expected external one")
            if bool(snap.isCurrent()) != step.current:
                raise FixFailed(f"snapshot {name} has the wrong current flag")
        if isinstance(step, DefineDomain):
            now = {d.name: d.source for d in parse_domain_disks(dom.XMLDesc(0))}
            for disk, path in step.sources.items():
                if (source := now.get(disk)) is None or source.path != path:
                    raise FixFailed(f"disk {disk} of domain {plan.domain} is not on {path}")
