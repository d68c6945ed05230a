"""Why a domain cannot be converted whole: each reason one line, naming what to do about it.

Pure checks over the facts, no I/O. The lines are stored as they are (quoted, unescaped) and
escaped when printed.
"""

from __future__ import annotations

import os
import shlex
from collections import defaultdict

from auditor.display import human_size
from auditor.fix.facts import DomainFacts
from auditor.fix.plan import NewImage, Options, Space, at, quoted
from auditor.fix.tree import Capture


def refusals(
    facts: DomainFacts, options: Options, disks: list[str], caps: list[Capture]
) -> list[str]:
    """What refuses the domain before anything is laid out: its state, its snapshots, its
    disks and images."""
    out = []
    virsh = f"virsh -c {shlex.quote(facts.host)}"  # the commands, for the host fix was given
    name = shlex.quote(facts.name)
    if facts.active:
        out.append(
            f"domain is {facts.state}: shut it down ({virsh} shutdown {name}; a guest that"
            f" ignores the request needs {virsh} destroy {name}, which cuts its power) and rerun"
        )
    if facts.managed_save:
        out.append(
            "domain has a managed save image, which expects the current disks: start it and "
            f"shut it down, or discard it ({virsh} managedsave-remove {name}), then rerun"
        )
    for snap in (s.model for s in facts.snapshots):
        name = quoted(snap.name)
        # External snapshots are converted with the rest of the tree (their memory files
        # kept); a manual disk's state is in no image libvirt knows of.
        manual = [d.name for d in snap.disks if d.mode == "manual"]
        if manual:
            out.append(
                f"snapshot {name} leaves disk {', '.join(manual)} to be snapshotted by hand "
                f"(snapshot='manual'): its state is in no image libvirt knows; delete that "
                f"snapshot (virsh snapshot-delete {facts.name} {snap.name} --metadata) and rerun"
            )
        for snap_disk in snap.disks:
            overlay = snap_disk.overlay if snap_disk.mode == "external" else None
            if overlay is not None and overlay.type != "file":
                out.append(_not_file(snap_disk.name, overlay.type, overlay.path))
        if not snap.has_domain_definition:
            out.append(f"snapshot {name} has no domain definition to redefine it with")
        if snap.memory == "internal" and not options.drop_memory:
            out.append(
                f"snapshot {name} holds the guest's memory (internal): add --drop-memory to "
                "keep only its disks, as a crash-consistent disk-only snapshot"
            )
    now = {d.name: d for d in facts.disks}
    for disk in disks:
        domain_disk = now.get(disk)
        if domain_disk is None or domain_disk.source is None:
            out.append(f"disk {disk} holds snapshots but is no longer in the domain")
        elif domain_disk.source.type != "file":
            out.append(_not_file(disk, domain_disk.source.type, domain_disk.source.path))
        for snap in (s.model for s in facts.snapshots):
            held = next((d for d in snap.disks if d.name == disk), None)
            # (manual disks are refused above)
            if held is None or held.mode != "no" or held.readonly or held.device != "disk":
                continue
            out.append(
                f"snapshot {quoted(snap.name)} does not capture disk {disk}, which other "
                "snapshots hold internally: it would keep pointing at the original image"
            )
    for cap in caps:
        if cap.source.type != "file":
            if cap.snapshot is not None:
                out.append(_not_file(cap.disk, cap.source.type, cap.source.path))
            continue
        image = cap.source.facts(facts.images)  # None too for a source naming no path
        if image is None or not image.exists:
            out.append(f"image {cap.source.path} of disk {cap.disk} is missing")
        elif image.error:
            out.append(f"image {cap.source.path} cannot be read: {image.error}")
        elif cap.tag is not None and cap.tag not in image.internal_snapshots:
            out.append(f"image {cap.source.path} has no internal snapshot {quoted(cap.tag)}")
        elif (cap.disk, cap.snapshot) not in facts.estimates and not facts.active:
            out.append(f"cannot estimate the size of disk {cap.disk} at {at(cap.snapshot)}")
    out += _stranded(facts, caps)
    return list(dict.fromkeys(out))  # one line per reason


def _not_file(disk: str, kind: str, path: str | None) -> str:
    return (
        f"disk {disk} is not on file storage ({kind} {path}): only file-based images can be "
        "converted"
    )


def _stranded(facts: DomainFacts, caps: list[Capture]) -> list[str]:
    """Internal snapshots in the images that libvirt does not list (qemu-img snapshot -c,
    --no-metadata) would be left behind in an image nothing uses any more."""
    known = defaultdict(set)
    for cap in caps:
        if cap.tag is not None:
            known[cap.source.path].add(cap.tag)
    out = []
    # (A source naming no path has no image to hold any.)
    for path in dict.fromkeys(c.source.path for c in caps if c.source.path is not None):
        image = facts.images.get(path)
        if image is None or image.error:
            continue
        for tag in dict.fromkeys(image.internal_snapshots):
            if image.internal_snapshots.count(tag) > 1:
                out.append(f"image {path} holds two internal snapshots named {quoted(tag)}")
            elif tag not in known[path]:
                out.append(
                    f"image {path} holds internal snapshot {quoted(tag)}, which libvirt does "
                    "not list: converting would strand it"
                )
    return out


def target_problems(
    facts: DomainFacts, new_images: list[NewImage], space: list[Space]
) -> list[str]:
    """What refuses the layout: target directories, names already taken, free space."""
    out = []
    for directory in dict.fromkeys(os.path.dirname(i.path) for i in new_images):
        if directory not in facts.filesystems:
            out.append(f"cannot write new images to {directory}: not a readable directory")
        elif why := facts.untrusted_target(directory):
            out.append(f"cannot write new images to {directory}: {why}")
    for image in new_images:
        for path in (image.path, image.path + ".part"):
            if path in facts.existing:
                out.append(f"{path} already exists: move it away, or choose --target-dir")
    out += [
        f"not enough free space in {s.directory}: {human_size(s.needed)} needed, "
        f"{human_size(s.available)} available"
        for s in space
        if s.needed > s.available
    ]
    return out
