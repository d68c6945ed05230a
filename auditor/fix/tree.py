"""The snapshot tree, per disk: which states to recreate and which image each one builds on.

A state is either an internal snapshot of an image (read at its tag) or, for an external
snapshot, the image its overlay was created on, read with its backing chain; a tree may hold
both kinds.

Pure functions over the audit model. Facts gathering uses them to know which size estimates
to make; the planner uses them to lay out images and libvirt calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from auditor.model import DiskSource, DomainDisk, Snapshot


def _age(snapshot: Snapshot) -> tuple:
    created = snapshot.created.timestamp() if snapshot.created else 0.0
    return (created, snapshot.name)


def parents_first(snapshots: Sequence[Snapshot]) -> list[Snapshot]:
    """Every snapshot after its parent (libvirt redefines a child only once its parent
    exists); siblings oldest first."""
    names = {s.name for s in snapshots}
    ordered: list[Snapshot] = []
    placed: set[str] = set()
    pending = sorted(snapshots, key=_age)
    while pending:
        # A parent outside the set (already deleted) counts as placed.
        ready = [
            s for s in pending if s.parent is None or s.parent not in names or s.parent in placed
        ]
        if not ready:  # a cycle in the metadata: keep the rest by age rather than loop
            ready = pending
        ordered.extend(ready)
        placed.update(s.name for s in ready)
        pending = [s for s in pending if s.name not in placed]
    return ordered


HOLDING_MODES = ("internal", "external")


def captured(snapshot: Snapshot, disk: str) -> bool:
    """Whether SNAPSHOT keeps a state of DISK (inside an image, or below an overlay)."""
    return any(d.name == disk and d.mode in HOLDING_MODES for d in snapshot.disks)


def internal_disks(snapshots: Sequence[Snapshot], domain_disks: Sequence[DomainDisk]) -> list[str]:
    """Disks that some snapshot holds internally: the domain's order, then any it lost."""
    wanted = {d.name for s in snapshots for d in s.disks if d.mode == "internal"}
    order = [d.name for d in domain_disks if d.name in wanted]
    return order + sorted(wanted - set(order))


def held_disks(snapshots: Sequence[Snapshot], domain_disks: Sequence[DomainDisk]) -> list[str]:
    """Disks that some snapshot keeps a state of, of either kind, in the same order."""
    wanted = {d.name for s in snapshots for d in s.disks if d.mode in HOLDING_MODES}
    order = [d.name for d in domain_disks if d.name in wanted]
    return order + sorted(wanted - set(order))


@dataclass(frozen=True, slots=True)
class Capture:
    """One state of one disk to recreate: DISK at SNAPSHOT (None: the disk now), read from
    SOURCE (at its internal snapshot TAG; None: its active layer, with its backing chain),
    stored as an overlay on BASE's image (None: as a full image)."""

    disk: str
    snapshot: str | None
    source: DiskSource
    base: str | None
    tag: str | None = None


def captures(
    snapshots: Sequence[Snapshot], current: str | None, domain_disks: Sequence[DomainDisk]
) -> list[Capture]:
    """The states to recreate, per disk in order: each snapshot holding the disk, internally
    or externally (parents first), then the disk's current state."""
    ordered = parents_first(snapshots)
    by_name = {s.name: s for s in ordered}
    result: list[Capture] = []
    for disk in held_disks(ordered, domain_disks):
        holders = [s for s in ordered if captured(s, disk)]
        for snap in holders:
            held = next(d for d in snap.disks if d.name == disk)
            if held.state_image is not None:
                tag = snap.name if held.mode == "internal" else None
                base = _holding_ancestor(snap, disk, by_name)
                result.append(Capture(disk, snap.name, held.state_image, base, tag))
        now = next((d for d in domain_disks if d.name == disk), None)
        if now is None or now.source is None or not holders:
            continue
        if current in by_name:
            base = current if captured(by_name[current], disk) else None
            base = base or _holding_ancestor(by_name[current], disk, by_name)
        else:
            base = None
        # No current snapshot (or none holding the disk): build on the newest that does.
        base = base or max(holders, key=_age).name
        result.append(Capture(disk, None, now.source, base))
    return result


def _holding_ancestor(snap: Snapshot, disk: str, by_name: dict[str, Snapshot]) -> str | None:
    """The nearest ancestor that holds DISK: the image this snapshot's state builds on."""
    seen = {snap.name}
    parent = by_name.get(snap.parent) if snap.parent else None
    while parent is not None and parent.name not in seen:
        if captured(parent, disk):
            return parent.name
        seen.add(parent.name)
        parent = by_name.get(parent.parent) if parent.parent else None
    return None
