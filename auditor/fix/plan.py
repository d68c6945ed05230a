"""The conversion plan: pure data computed from a domain's facts, no I/O.

A plan lists the images to create (each snapshot's disk state as a qcow2 image, the oldest
full, every later one an overlay of what differs from its parent's), the libvirt calls that
move the metadata over, and, when the domain cannot be converted whole, why not. The journal
stores the plan with the original XML, so that execution, resume and rollback need nothing
else.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

from auditor.display import human_size
from auditor.fix.facts import DomainFacts
from auditor.fix.metadata import domain_with_sources, external_snapshot
from auditor.fix.names import after_name, image_name
from auditor.fix.tree import Capture, internal_disks

DEFAULT_CLUSTER = 65536


@dataclass(frozen=True)
class Options:
    drop_memory: bool = False
    remove_originals: bool = False


# Steps, in the order a plan runs them. Each is idempotent, or detectably done (execute.py).


@dataclass(frozen=True)
class CreateImage:
    """A disk state as a new image: a full copy when `backing` is None, else an overlay."""

    kind: ClassVar[str] = "create-image"
    path: str
    disk: str
    snapshot: str | None  # None: the disk as it is now
    source: str
    source_format: str
    backing: str | None
    cluster_size: int


@dataclass(frozen=True)
class CreateOverlay:
    """An empty overlay on a snapshot's state image: what a leaf snapshot that is not current
    names as "the changes made after it", of which nothing was kept."""

    kind: ClassVar[str] = "create-overlay"
    path: str
    disk: str
    snapshot: str
    backing: str


@dataclass(frozen=True)
class VerifyImage:
    kind: ClassVar[str] = "verify-image"
    path: str
    disk: str
    snapshot: str | None
    source: str
    source_format: str


@dataclass(frozen=True)
class DropSnapshotMetadata:
    kind: ClassVar[str] = "drop-snapshot-metadata"
    snapshot: str


@dataclass(frozen=True)
class RedefineSnapshot:
    kind: ClassVar[str] = "redefine-snapshot"
    snapshot: str
    current: bool
    states: dict[str, str]  # disk → the image holding the snapshot's state
    overlays: dict[str, str]  # disk → the image holding what changed after it
    xml: str  # secrets included: stored in the journal, never printed


@dataclass(frozen=True)
class DefineDomain:
    kind: ClassVar[str] = "define-domain"
    sources: dict[str, str]  # disk → its new top image
    xml: str


@dataclass(frozen=True)
class RemoveOriginal:
    kind: ClassVar[str] = "remove-original"
    path: str


Step = (
    CreateImage
    | CreateOverlay
    | VerifyImage
    | DropSnapshotMetadata
    | RedefineSnapshot
    | DefineDomain
    | RemoveOriginal
)
STEP_TYPES: dict[str, type] = {
    cls.kind: cls
    for cls in (
        CreateImage,
        CreateOverlay,
        VerifyImage,
        DropSnapshotMetadata,
        RedefineSnapshot,
        DefineDomain,
        RemoveOriginal,
    )
}
METADATA_STEPS = (DropSnapshotMetadata, RedefineSnapshot, DefineDomain)
_SECRET_FIELDS = {"xml"}


def step_to_json(step: Step, *, secrets: bool) -> dict[str, Any]:
    data = {"kind": step.kind, **asdict(step)}
    return data if secrets else {k: v for k, v in data.items() if k not in _SECRET_FIELDS}


def step_from_json(data: dict[str, Any]) -> Step:
    cls = STEP_TYPES[data["kind"]]
    return cls(**{f.name: data[f.name] for f in fields(cls)})


@dataclass(frozen=True)
class NewImage:
    path: str
    disk: str
    snapshot: str | None  # None: the disk as it is now
    source: str  # the original image it is read from
    backing: str | None  # None: a full image
    estimated_bytes: int  # an upper bound
    after: bool = False  # an empty overlay for what comes after a leaf snapshot


@dataclass(frozen=True)
class Original:
    """A source image: never written; its size and mtime prove it was not written either."""

    path: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Space:
    directory: str
    needed: int
    available: int


@dataclass(frozen=True)
class Restore:
    """The metadata as it was, for an exact rollback."""

    domain_xml: str
    snapshots: tuple[tuple[str, str], ...]  # (name, XML), parents first
    current: str | None


@dataclass(frozen=True)
class DomainPlan:
    host: str
    domain: str
    uuid: str
    refusals: tuple[str, ...] = ()
    snapshots: tuple[str, ...] = ()  # converted, parents first
    current: str | None = None
    disks: tuple[str, ...] = ()
    images: tuple[NewImage, ...] = ()
    space: tuple[Space, ...] = ()
    originals: tuple[Original, ...] = ()
    remove_originals: bool = False
    steps: tuple[Step, ...] = ()
    restore: Restore | None = None

    @property
    def status(self) -> str:
        if self.refusals:
            return "refused"
        return "ready" if self.steps else "nothing to do"

    def to_json(self, *, secrets: bool = False) -> dict[str, Any]:
        data = {
            "host": self.host,
            "domain": self.domain,
            "uuid": self.uuid,
            "status": self.status,
            "refusals": list(self.refusals),
            "snapshots": list(self.snapshots),
            "current": self.current,
            "disks": list(self.disks),
            "images": [asdict(i) for i in self.images],
            "space": [asdict(s) for s in self.space],
            "originals": [asdict(o) for o in self.originals],
            "remove_originals": self.remove_originals,
            "steps": [step_to_json(s, secrets=secrets) for s in self.steps],
        }
        if secrets and self.restore is not None:
            data["restore"] = asdict(self.restore)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DomainPlan:
        restore = data.get("restore")
        return cls(
            host=data["host"],
            domain=data["domain"],
            uuid=data["uuid"],
            refusals=tuple(data["refusals"]),
            snapshots=tuple(data["snapshots"]),
            current=data["current"],
            disks=tuple(data["disks"]),
            images=tuple(NewImage(**i) for i in data["images"]),
            space=tuple(Space(**s) for s in data["space"]),
            originals=tuple(Original(**o) for o in data["originals"]),
            remove_originals=data["remove_originals"],
            steps=tuple(step_from_json(s) for s in data["steps"]),
            restore=None
            if restore is None
            else Restore(
                restore["domain_xml"],
                tuple((name, xml) for name, xml in restore["snapshots"]),
                restore["current"],
            ),
        )


def quoted(name: str) -> str:
    return f"'{name}'"


def plan_domain(facts: DomainFacts, options: Options) -> DomainPlan:
    plan = DomainPlan(facts.host, facts.name, facts.uuid)
    models = [s.model for s in facts.snapshots]
    disks = internal_disks(models, facts.disks)
    if not disks and not any(m.memory == "internal" for m in models):
        return plan
    caps = facts.captures
    refusals = _refusals(facts, options, disks, caps)
    if refusals:
        return DomainPlan(plan.host, plan.domain, plan.uuid, refusals=tuple(refusals))

    layout = _layout(facts, caps)
    new_images = layout.images
    space = _space(facts, new_images)
    refusals = _target_problems(facts, new_images) + [
        f"not enough free space in {s.directory}: {human_size(s.needed)} needed, "
        f"{human_size(s.available)} available"
        for s in space
        if s.needed > s.available
    ]
    if refusals:
        return DomainPlan(plan.host, plan.domain, plan.uuid, refusals=tuple(refusals))

    originals = []
    for path in dict.fromkeys(c.source.path for c in caps):
        image = facts.images[path]
        originals.append(Original(path, image.size or 0, image.mtime_ns or 0))
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
    )


def _refusals(
    facts: DomainFacts, options: Options, disks: list[str], caps: list[Capture]
) -> list[str]:
    out = []
    if facts.active:
        out.append(f"domain is {facts.state}: shut it down (virsh shutdown {facts.name}) and rerun")
    if facts.managed_save:
        out.append(
            "domain has a managed save image, which expects the current disks: start it and "
            f"shut it down, or discard it (virsh managedsave-remove {facts.name}), then rerun"
        )
    for snap in (s.model for s in facts.snapshots):
        name = quoted(snap.name)
        if snap.memory == "external" or any(d.mode in ("external", "manual") for d in snap.disks):
            out.append(
                f"snapshot {name} is not internal: domains that mix internal and external "
                "snapshots are not converted"
            )
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
            out.append(f"disk {disk} holds internal snapshots but is no longer in the domain")
        elif domain_disk.source.type != "file":
            out.append(_not_file(disk, domain_disk.source.type, domain_disk.source.path))
        for snap in (s.model for s in facts.snapshots):
            held = next((d for d in snap.disks if d.name == disk), None)
            # (external and manual disks are refused as mixing, above)
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
        image = facts.images.get(cap.source.path)
        if image is None or not image.exists:
            out.append(f"image {cap.source.path} of disk {cap.disk} is missing")
        elif image.error:
            out.append(f"image {cap.source.path} cannot be read: {image.error}")
        elif cap.snapshot is not None and cap.snapshot not in image.snapshots:
            out.append(f"image {cap.source.path} has no internal snapshot {quoted(cap.snapshot)}")
        elif (cap.disk, cap.snapshot) not in facts.estimates and not facts.active:
            out.append(f"cannot estimate the size of disk {cap.disk} at {_at(cap.snapshot)}")
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
        if cap.snapshot is not None:
            known[cap.source.path].add(cap.snapshot)
    out = []
    for path in dict.fromkeys(c.source.path for c in caps):
        image = facts.images.get(path)
        if image is None or image.error:
            continue
        for tag in dict.fromkeys(image.snapshots):
            if image.snapshots.count(tag) > 1:
                out.append(f"image {path} holds two internal snapshots named {quoted(tag)}")
            elif tag not in known[path]:
                out.append(
                    f"image {path} holds internal snapshot {quoted(tag)}, which libvirt does "
                    "not list: converting would strand it"
                )
    return out


def _at(snapshot: str | None) -> str:
    return "its current state" if snapshot is None else f"snapshot {quoted(snapshot)}"


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


def _target_problems(facts: DomainFacts, new_images: list[NewImage]) -> list[str]:
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
    return out


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
    source_of = {(c.disk, c.snapshot): c.source for c in caps}
    steps: list[Step] = []
    for image in layout.images:
        source = source_of[(image.disk, image.snapshot)]
        path = source.path or ""
        fmt = source.format or facts.images[path].format or "qcow2"
        if image.after:
            steps.append(CreateOverlay(image.path, image.disk, image.snapshot, image.backing))
        else:
            cluster = facts.images[path].cluster_size or DEFAULT_CLUSTER
            steps.append(
                CreateImage(
                    image.path, image.disk, image.snapshot, path, fmt, image.backing, cluster
                )
            )
        steps.append(VerifyImage(image.path, image.disk, image.snapshot, path, fmt))

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
        steps += [RemoveOriginal(o.path) for o in originals]
    return steps
