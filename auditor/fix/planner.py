"""The conversion plan: pure data computed from a domain's facts, no I/O.

A plan lists the images to create (each snapshot's disk state as a qcow2 image, the oldest
full, every later one an overlay of what differs from its parent's), the libvirt calls that
move the metadata over, and, when the domain cannot be converted whole, why not
(refusals.py). The journal stores the plan with the original XML, so that execution, resume
and rollback need nothing else.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass

from auditor.fix.facts import DEFAULT_CLUSTER, DomainFacts
from auditor.fix.names import after_name, image_name
from auditor.fix.plan import (
    CreateImage,
    CreateOverlay,
    DefineDomain,
    DomainPlan,
    DropSnapshotMetadata,
    NewImage,
    Options,
    Original,
    RedefineSnapshot,
    RemoveOriginal,
    Restore,
    Space,
    Step,
    VerifyImage,
    quoted,
)
from auditor.fix.refusals import refusals, target_problems
from auditor.fix.tree import Capture, held_disks, internal_disks
from auditor.fix.xml_rewrite import domain_with_sources, external_snapshot


def plan_domain(facts: DomainFacts, options: Options) -> DomainPlan:
    plan = DomainPlan(facts.host, facts.name, facts.uuid)
    models = [s.model for s in facts.snapshots]
    if not internal_disks(models, facts.disks) and not any(m.memory == "internal" for m in models):
        return plan
    # The whole tree is converted, external snapshots included: a tree of one kind only
    # is what libvirt can revert to and delete.
    disks = held_disks(models, facts.disks)
    caps = facts.captures
    reasons = refusals(facts, options, disks, caps)
    if reasons:
        return DomainPlan(plan.host, plan.domain, plan.uuid, refusals=tuple(reasons))

    layout = _layout(facts, caps)
    new_images = layout.images
    space = _space(facts, new_images)
    reasons = target_problems(facts, new_images, space)
    if reasons:
        return DomainPlan(plan.host, plan.domain, plan.uuid, refusals=tuple(reasons))

    originals = []
    for path in dict.fromkeys([c.source.path for c in caps] + list(facts.overlays)):
        if path is None:  # refused above: every state is read from an image the facts hold
            raise ValueError(f"disk state of domain {facts.name} without an image")
        image = facts.images[path]
        if image.exists:
            originals.append(
                Original(
                    path,
                    image.length or 0,
                    image.mtime_ns or 0,
                    device=image.device or 0,
                    inode=image.inode or 0,
                )
            )
    return DomainPlan(
        host=facts.host,
        domain=facts.name,
        uuid=facts.uuid,
        snapshots=tuple(m.name for m in models),
        current=facts.current,
        disks=tuple(disks),
        images=tuple(new_images),
        space=tuple(space),
        originals=tuple(originals),
        remove_originals=options.remove_originals,
        steps=tuple(_steps(facts, caps, layout, originals, options)),
        restore=Restore(
            facts.xml, tuple((s.model.name, s.xml) for s in facts.snapshots), facts.current
        ),
        notes=tuple(_overwritten(caps)),
    )


def _overwritten(caps: list[Capture]) -> list[str]:
    """External snapshots whose state image the domain writes to now: a revert to an
    internal snapshot in that image rewrote it (libvirt does not stop it), so what reverting
    to the snapshot shows today is what is kept."""
    now = {c.disk: c.source.path for c in caps if c.snapshot is None}
    return [
        f"snapshot {quoted(c.snapshot)}: disk {c.disk}'s state is in {c.source.path}, which "
        "the domain writes to now (a revert to an internal snapshot rewrote it); it is kept "
        "as that image is now, as reverting to it shows today"
        for c in caps
        if c.snapshot is not None and c.tag is None and c.source.path == now.get(c.disk)
    ]


@dataclass
class _Layout:
    images: list[NewImage]  # in the order they are created
    states: dict[tuple[str, str | None], str]  # (disk, snapshot or None: now) → image
    overlays: dict[tuple[str, str], str]  # (disk, snapshot) → what changed after it
    reverts: dict[tuple[str, str], str]  # (disk, current snapshot) → the domain's top image


def _layout(facts: DomainFacts, caps: list[Capture]) -> _Layout:
    """Where every state goes, and which image each snapshot names as its overlay. This is
    libvirt's own layout for external snapshots: a snapshot's overlay is the image its
    child's state lives in (the child on the current branch, when there is one), and the
    current snapshot's overlay is the domain's top image."""
    states: dict[tuple[str, str | None], str] = {}
    for cap in caps:
        name = image_name(facts.name, facts.uuid, cap.disk, cap.snapshot, cap.source.path or "")
        states[(cap.disk, cap.snapshot)] = os.path.join(facts.target_dirs[cap.disk], name)
    kids: dict[tuple[str, str], list[str]] = defaultdict(list)
    active: set[tuple[str, str]] = set()  # (disk, snapshot) under the domain's top image
    by_key = {(c.disk, c.snapshot): c for c in caps}
    for cap in caps:
        if cap.snapshot is not None and cap.base is not None:
            kids[(cap.disk, cap.base)].append(cap.snapshot)
        if cap.snapshot is None:
            base = cap.base
            while base is not None:
                active.add((cap.disk, base))
                base = by_key[(cap.disk, base)].base
    top_base = {c.disk: c.base for c in caps if c.snapshot is None}

    layout = _Layout([], states, {}, {})
    for cap in caps:
        state = states[(cap.disk, cap.snapshot)]
        backing = states[(cap.disk, cap.base)] if cap.base is not None else None
        estimate = facts.estimates[(cap.disk, cap.snapshot)]
        layout.images.append(
            NewImage(state, cap.disk, cap.snapshot, cap.source.path or "", backing, estimate)
        )
        if cap.snapshot is None:
            continue
        key = (cap.disk, cap.snapshot)
        children = kids.get(key, [])
        now_on_it = cap.snapshot == facts.current and top_base.get(cap.disk) == cap.snapshot
        if children:
            on_branch = [k for k in children if (cap.disk, k) in active]
            layout.overlays[key] = states[(cap.disk, (on_branch or children)[0])]
            if now_on_it:
                layout.reverts[key] = states[(cap.disk, None)]
        elif now_on_it:
            layout.overlays[key] = states[(cap.disk, None)]
        else:
            after = after_name(state)
            layout.overlays[key] = after
            size = facts.overlay_bytes.get(cap.source.path or "", 0)
            layout.images.append(
                NewImage(after, cap.disk, cap.snapshot, cap.source.path or "", state, size, True)
            )
    return layout


def _space(facts: DomainFacts, new_images: list[NewImage]) -> list[Space]:
    """Needed vs available per file system (directories on one file system share its space)."""
    needed: dict[int, int] = defaultdict(int)
    first_dir: dict[int, str] = {}
    for image in new_images:
        directory = os.path.dirname(image.path)
        fs = facts.filesystems.get(directory)
        if fs is not None:
            first_dir.setdefault(fs.device, directory)
            needed[fs.device] += image.estimated_bytes
    return [
        Space(directory, needed[device], facts.filesystems[directory].available)
        for device, directory in first_dir.items()
    ]


def _steps(
    facts: DomainFacts,
    caps: list[Capture],
    layout: _Layout,
    originals: list[Original],
    options: Options,
) -> list[Step]:
    source_of = {(c.disk, c.snapshot): c for c in caps}
    steps: list[Step] = []
    for image in layout.images:
        cap = source_of[(image.disk, image.snapshot)]
        path = cap.source.path or ""
        fmt = cap.source.format or facts.images[path].format or "qcow2"
        if image.after:
            # _layout makes these for a snapshot only, on the image of its state.
            if image.snapshot is None or image.backing is None:
                raise ValueError(f"overlay {image.path} after no snapshot's state")
            steps.append(CreateOverlay(image.path, image.disk, image.snapshot, image.backing))
        else:
            cluster = facts.images[path].cluster_size or DEFAULT_CLUSTER
            steps.append(
                CreateImage(
                    image.path,
                    image.disk,
                    image.snapshot,
                    path,
                    fmt,
                    image.backing,
                    cluster,
                    cap.tag,
                )
            )
        steps.append(VerifyImage(image.path, image.disk, image.snapshot, path, fmt, cap.tag))

    snapshots = [s.model for s in facts.snapshots]
    # Children before parents: dropping a parent first would rewrite its children's metadata.
    steps += [DropSnapshotMetadata(s.name) for s in reversed(snapshots)]
    for snap, snap_facts in zip(snapshots, facts.snapshots, strict=True):
        states = {d: p for (d, s), p in layout.states.items() if s == snap.name}
        overlays = {d: layout.overlays[(d, snap.name)] for d in states}
        reverts = {d: p for (d, s), p in layout.reverts.items() if s == snap.name}
        xml = external_snapshot(
            snap_facts.xml,
            states=states,
            overlays=overlays,
            revert_overlays=reverts,
            drop_memory=snap.memory == "internal",
        )
        current = snap.name == facts.current
        steps.append(RedefineSnapshot(snap.name, current, states, overlays, xml))

    sources = {d: p for (d, s), p in layout.states.items() if s is None}
    steps.append(DefineDomain(sources, domain_with_sources(facts.xml, sources)))
    if options.remove_originals:
        # Never an image something else still uses: another domain's disk, snapshot or
        # backing chain (a template shared by linked clones).
        steps += [RemoveOriginal(o.path) for o in originals if o.path not in facts.elsewhere]
    return steps
