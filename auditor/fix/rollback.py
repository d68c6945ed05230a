"""Undoing a conversion: the original domain definition and snapshot metadata put back
exactly, and every file the conversion created removed.

Rollback compares the host with the original metadata the journal holds and repairs whatever
differs, so it is idempotent and finishes a rollback that was killed or could not record its
end. It journals that it began before it changes anything (from then on the conversion is
never resumed), each step it undid (the metadata, then each new image), and that it ended.
It removes only files whose identity the journal recorded as they were created. While it
works it holds QEMU's image lock on the originals and the new images, so the domain cannot
start on either.

Which data is the truth: if the guest wrote to its original after the conversion began (it
ran before being defined on the new images), the original is newer and is kept; if it wrote
to its new top image (it ran after), rolling back would lose that, so rollback refuses and
names --resume. Both at once cannot come from the guest, and is refused.
"""

from __future__ import annotations

import os
import shlex

import libvirt

from auditor import safefs
from auditor.fix import image_hold, images
from auditor.fix.execute import (
    CURRENT,
    METADATA_ONLY,
    REDEFINE,
    FixFailed,
    Progress,
    _domain,
    _snapshot,
    command,
    original_changed,
)
from auditor.fix.gather import SECURE_DOMAIN, SECURE_SNAPSHOT
from auditor.fix.journal import FINISHED, ROLLED_BACK, Journal, file_id
from auditor.fix.plan import DefineDomain, VerifyImage, quoted
from auditor.sources.xml.parser import parse_domain_disks


def rollback(conn: libvirt.virConnect, journal: Journal, progress: Progress) -> None:
    plan = journal.plan
    if journal.state == ROLLED_BACK:
        progress(f"{journal.path} was already rolled back")
        return
    dom = _domain(conn, plan)
    again = command(journal, "--rollback")
    if dom.isActive():
        raise FixFailed(f"domain {plan.domain} is running: shut it down, then run {again}")
    held = [o.path for o in plan.originals] + [i.path for i in plan.images]
    try:
        with image_hold.no_writers(held):
            if dom.isActive():
                raise FixFailed(f"domain {plan.domain} is running: shut it down, then run {again}")
            for original in plan.originals:
                if file_id(original.path) is None:
                    gone = f"original image {original.path} was removed (--remove-originals)"
                    if journal.state == FINISHED:
                        raise FixFailed(f"{gone}: there is nothing to roll back to")
                    resume = command(journal, "--resume")
                    raise FixFailed(f"{gone}, so there is nothing to roll back to: run {resume}")
            _refuse_losing_writes(dom, journal)
            journal.rollback_started()
            _restore_metadata(conn, dom, journal, progress)
            journal.undo_done("metadata")
            for image in plan.images:
                _discard(journal, image.path, progress)
                images.fsync_dir(os.path.dirname(image.path))
                journal.undo_done(image.path)
    except image_hold.HoldError as exc:
        raise FixFailed(f"{exc}, then run {again}") from None
    except images.ImageError as exc:
        raise FixFailed(f"{exc}; once that is solved, run {again}") from None
    journal.roll_back()


def _restore_metadata(
    conn: libvirt.virConnect, dom: libvirt.virDomain, journal: Journal, progress: Progress
) -> None:
    restore = journal.restore
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
        progress(f"restore the original definition of domain {journal.plan.domain}")
        conn.defineXML(restore.domain_xml)


def _discard(journal: Journal, path: str, progress: Progress) -> None:
    """Remove PATH (and its unfinished .part) only if it is the file this conversion made."""
    safefs.remove_private_dir(images.part_path(path))  # ours: 0700, made by this process
    ident, recorded = file_id(path), journal.created.get(path)
    if ident is None:
        return
    if recorded is None or ident[:2] != recorded[:2]:
        progress(f"left {path} in place: it is not a file this conversion created")
        return
    os.unlink(path)


def _refuse_losing_writes(dom: libvirt.virDomain, journal: Journal) -> None:
    """Refuse where a rollback would drop what the guest wrote to a new top image."""
    plan = journal.plan
    define = next(s for s in plan.steps if isinstance(s, DefineDomain))
    originals = {i.disk: i.source for i in plan.images if i.snapshot is None}
    changed = {o.path for o in plan.originals if original_changed(o)}
    formats = {s.path: s.source_format for s in plan.steps if isinstance(s, VerifyImage)}
    now = {d.name: d.source for d in parse_domain_disks(dom.XMLDesc(0))}
    resume = command(journal, "--resume")
    for disk, top in define.sources.items():
        original = originals[disk]
        source = now.get(disk)
        path = source.path if source is not None else None  # None: the disk is gone, or empty
        if path not in (original, top):
            again = command(journal, "--rollback")
            raise FixFailed(
                f"disk {disk} now uses {path}, neither its original image {original} nor the "
                "converted one: the domain changed after the conversion (a revert?), not "
                f"rolling back; to roll back anyway, put disk {disk} back on {original} "
                f"(virsh edit {shlex.quote(plan.domain)}), then run {again}"
            )
        ident, recorded = file_id(top), journal.created.get(top)
        if ident is None or ident == recorded:
            continue  # never written: nothing of the guest's is in it
        if recorded is not None and ident[:2] != recorded[:2]:
            continue  # not ours: left in place by _discard
        if original in changed:
            raise FixFailed(
                f"disk {disk}: both the original image {original} and the converted image "
                f"{top} were written after the conversion began; neither is rolled back over "
                "the other: copy what you need from one of them, then remove it"
            )
        if not images.same_content(top, "qcow2", original, formats[top]):
            then = "the conversion is complete" if journal.state == FINISHED else f"run {resume}"
            raise FixFailed(
                f"disk {disk}: the guest wrote to the converted image {top} after the "
                f"conversion; rolling back would lose that: {then}"
            )
