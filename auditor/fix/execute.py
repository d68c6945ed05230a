"""Runs a journaled plan, resumes it, or rolls it back.

Every step is idempotent or detectably complete, so a run killed at any point (the step it
was in half done, or done but not journaled) resumes by running that step again. Rollback
does not trust the journal's list of done steps at all: it compares the host with the
original metadata the journal holds and repairs whatever differs.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

import libvirt

from auditor.errors import one_line
from auditor.fix import images
from auditor.fix.gather import SECURE_DOMAIN, SECURE_SNAPSHOT
from auditor.fix.journal import FINISHED, ROLLED_BACK, Journal
from auditor.fix.steps import (
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
from auditor.sources.parser import parse_domain_disks, parse_snapshot

Progress = Callable[[str], None]
Describe = Callable[[Step], str]  # one line per step, for progress (the fix plan reporter's)
REDEFINE = libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE
CURRENT = libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT
METADATA_ONLY = libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY


class FixFailed(Exception):
    """A step failed or the host is not as the journal expects; the message is one line."""


def run(conn: libvirt.virConnect, journal: Journal, progress: Progress, describe: Describe) -> None:
    """Run every step the journal has not recorded, then check the result on the host."""
    plan = journal.plan
    if journal.state == ROLLED_BACK:
        raise FixFailed(f"{journal.path} was rolled back; plan a new fix instead")
    dom = _domain(conn, plan)
    define_step = next(n for n, s in enumerate(plan.steps, 1) if isinstance(s, DefineDomain))
    for number, step in enumerate(plan.steps, 1):
        if number in journal.done:
            continue
        _guard(dom, plan, step, defined=define_step in journal.done)
        progress(f"[{number}/{len(plan.steps)}] {describe(step)}")
        try:
            _run_step(conn, dom, step)
        except (libvirt.libvirtError, images.ImageError, OSError) as exc:
            raise FixFailed(f"step {number} ({step.kind}) failed: {one_line(exc)}") from None
        _test_kill(number, journaled=False)
        journal.step_done(number)
        _test_kill(number, journaled=True)
    check_converted(dom, plan)
    if journal.state != FINISHED:
        journal.finish()


def _test_kill(number: int, *, journaled: bool) -> None:
    # Test hook: die as `kill -9` would, right after step N is journaled (or, with
    # SNAPAUDIT_FIX_KILL_BEFORE_JOURNAL set, done but not yet journaled), so that tests can
    # prove --resume and --rollback recover from every point.
    if os.environ.get("SNAPAUDIT_FIX_KILL_AFTER_STEP") != str(number):
        return
    if journaled == bool(os.environ.get("SNAPAUDIT_FIX_KILL_BEFORE_JOURNAL")):
        return
    os.kill(os.getpid(), signal.SIGKILL)


def _domain(conn: libvirt.virConnect, plan: DomainPlan) -> libvirt.virDomain:
    try:
        return conn.lookupByUUIDString(plan.uuid)
    except libvirt.libvirtError as exc:
        raise FixFailed(f"domain {plan.domain} ({plan.uuid}): {one_line(exc)}") from None


def _guard(dom: libvirt.virDomain, plan: DomainPlan, step: Step, *, defined: bool) -> None:
    """The plan holds only while nothing else touches the domain and its images."""
    for original in plan.originals:
        try:
            stat = os.stat(original.path)
        except FileNotFoundError:
            if isinstance(step, RemoveOriginal):
                continue  # removed by this very step before a crash
            raise FixFailed(f"original image {original.path} has disappeared") from None
        if (stat.st_size, stat.st_mtime_ns) != (original.size, original.mtime_ns):
            raise FixFailed(
                f"original image {original.path} changed since the plan was made: the domain "
                "must stay shut off during the conversion; run --rollback, then fix again"
            )
    if isinstance(step, RemoveOriginal):
        return  # the domain no longer uses the originals: it may run again
    if dom.isActive():
        raise FixFailed(
            f"domain {plan.domain} was started during the conversion: shut it down, then "
            "run --resume or --rollback"
        )
    if not defined and not _unchanged_or_ours(dom.XMLDesc(SECURE_DOMAIN), plan):
        raise FixFailed(
            f"the definition of domain {plan.domain} changed since the plan was made; "
            "run --rollback, then fix again"
        )


def _unchanged_or_ours(xml: str, plan: DomainPlan) -> bool:
    """The original definition, or the one define-domain makes (it ran, then we died)."""
    if xml == plan.restore.domain_xml:
        return True
    define = next(s for s in plan.steps if isinstance(s, DefineDomain))
    now = {d.name: d.source.path for d in parse_domain_disks(xml) if d.source is not None}
    return all(now.get(disk) == path for disk, path in define.sources.items())


def _run_step(conn: libvirt.virConnect, dom: libvirt.virDomain, step: Step) -> None:
    match step:
        case CreateImage():
            source = (step.source, step.source_format, step.tag)
            images.create_image(step.path, *source, step.backing, step.cluster_size)
        case CreateOverlay():
            images.create_overlay(step.path, step.backing)
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
                    "this journal defines"
                )
        case DefineDomain():
            conn.defineXML(step.xml)
        case RemoveOriginal():
            images.remove_file(step.path)


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
        name in disks
        and disks[name].mode == "external"
        and disks[name].overlay is not None
        and disks[name].overlay.path == step.overlays[name]
        and disks[name].state_image is not None
        and disks[name].state_image.path == state
        for name, state in step.states.items()
    )


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
                if now.get(disk) is None or now[disk].path != path:
                    raise FixFailed(f"disk {disk} of domain {plan.domain} is not on {path}")


def rollback(conn: libvirt.virConnect, journal: Journal, progress: Progress) -> None:
    """Put back the original domain definition and snapshot metadata, exactly, and remove
    every file the conversion created. The original images were never written."""
    plan, restore = journal.plan, journal.plan.restore
    if journal.state == ROLLED_BACK:
        progress(f"{journal.path} was already rolled back")
        return
    dom = _domain(conn, plan)
    if dom.isActive():
        raise FixFailed(f"domain {plan.domain} is running: shut it down, then run --rollback")
    for original in plan.originals:
        if not os.path.exists(original.path):
            raise FixFailed(
                f"original image {original.path} was removed (--remove-originals): there is "
                "nothing to roll back to"
            )
    _refuse_losing_writes(dom, plan)

    original_xml = dict(restore.snapshots)
    names = [name for name, _ in restore.snapshots]
    for name in reversed(names):  # children first, so no parent's removal rewrites a child
        snap = _snapshot(dom, name)
        if snap is not None and snap.getXMLDesc(SECURE_SNAPSHOT) != original_xml[name]:
            progress(f"drop the converted metadata of snapshot {quoted(name)}")
            snap.delete(METADATA_ONLY)
    for name in names:
        if _snapshot(dom, name) is None:
            progress(f"restore the original metadata of snapshot {quoted(name)}")
            flags = REDEFINE | (CURRENT if name == restore.current else 0)
            dom.snapshotCreateXML(original_xml[name], flags)
    if restore.current is not None and not dom.snapshotLookupByName(restore.current).isCurrent():
        dom.snapshotCreateXML(original_xml[restore.current], REDEFINE | CURRENT)
    if dom.XMLDesc(SECURE_DOMAIN) != restore.domain_xml:
        progress(f"restore the original definition of domain {plan.domain}")
        conn.defineXML(restore.domain_xml)
    for image in plan.images:
        images.discard(image.path)
    for directory in {os.path.dirname(i.path) for i in plan.images}:
        images.fsync_dir(directory)
    journal.roll_back()


def _refuse_losing_writes(dom: libvirt.virDomain, plan: DomainPlan) -> None:
    """Once the domain runs on its new images, rolling back would drop what it wrote since:
    refuse unless every new top image still shows exactly its source's content."""
    define = next(s for s in plan.steps if isinstance(s, DefineDomain))
    originals = {i.disk: i.source for i in plan.images if i.snapshot is None}
    formats = {s.path: s.source_format for s in plan.steps if isinstance(s, VerifyImage)}
    now = {d.name: d.source for d in parse_domain_disks(dom.XMLDesc(0))}
    for disk, top in define.sources.items():
        path = now[disk].path if now.get(disk) is not None else None
        if path == originals[disk]:
            continue
        if path != top:
            raise FixFailed(
                f"disk {disk} now uses {path}, neither its original image nor the converted "
                "one: the domain changed after the conversion, not rolling back"
            )
        if not images.same_content(top, "qcow2", originals[disk], formats[top]):
            raise FixFailed(
                f"disk {disk} was written to after the conversion ({top}); rolling back "
                "would lose those writes"
            )
