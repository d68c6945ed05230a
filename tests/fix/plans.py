"""A domain's facts without a hypervisor, for tests of the planner: snapshot XML, the domain
web01 with two disks, facts gathered as fix would (any of them overridden), and a two-snapshot
tree. Shared by the plan, symlink and safefs tests."""

from __future__ import annotations

from auditor.fix.facts import DomainFacts, Filesystem, SnapshotFacts
from auditor.fix.tree import parents_first
from auditor.model import FileFacts
from auditor.sources.xml.parser import parse_domain_disks, parse_snapshot

UUID = "6f1c3c8e-4c1e-4a8e-9d3b-7b1a2f0c9e11"
MiB = 1024 * 1024


def snapshot_xml(
    name: str,
    parent: str | None,
    created: int,
    disks: dict[str, str],
    *,
    memory: str = "no",
    state: str = "shutoff",
    sources: dict[str, str] | None = None,
) -> str:
    sources = sources or {d: f"/images/web01-{d}.qcow2" for d in disks}
    parent_xml = f"<parent><name>{parent}</name></parent>" if parent else ""
    disk_xml = "".join(f"<disk name='{d}' snapshot='{m}'/>" for d, m in disks.items())
    devices = "".join(
        f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
        f"<source file='{path}'/><target dev='{d}' bus='virtio'/></disk>"
        for d, path in sources.items()
    )
    return (
        f"<domainsnapshot><name>{name}</name><state>{state}</state>{parent_xml}"
        f"<creationTime>{created}</creationTime><memory snapshot='{memory}'/>"
        f"<disks>{disk_xml}</disks><domain type='kvm'><name>web01</name><uuid>{UUID}</uuid>"
        f"<devices>{devices}</devices></domain></domainsnapshot>"
    )


def model(xml: str, current: bool = False):
    return parse_snapshot(xml, host="h", domain="web01", domain_uuid=UUID, current=current)


DOMAIN_XML = (
    f"<domain type='kvm'><name>web01</name><uuid>{UUID}</uuid><devices>"
    "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
    "<source file='/images/web01-vda.qcow2'/><target dev='vda' bus='virtio'/></disk>"
    "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
    "<source file='/images/web01-vdb.qcow2'/><target dev='vdb' bus='virtio'/></disk>"
    "</devices></domain>"
)


def facts(snapshots: list[str], current: str | None, **overrides) -> DomainFacts:
    models = [model(x, current=model(x).name == current) for x in snapshots]
    order = {s.name: i for i, s in enumerate(parents_first(models))}
    pairs = sorted(zip(snapshots, models, strict=True), key=lambda p: order[p[1].name])
    base = DomainFacts(
        host="qemu:///system",
        name="web01",
        uuid=UUID,
        state="shut off",
        active=False,
        managed_save=False,
        xml=DOMAIN_XML,
        disks=parse_domain_disks(DOMAIN_XML),
        snapshots=tuple(SnapshotFacts(x, m) for x, m in pairs),
        current=current,
    )
    caps = base.captures
    tags = {}
    for cap in caps:
        if cap.snapshot:
            tags.setdefault(cap.source.path, []).append(cap.snapshot)
    defaults = dict(
        images={
            path: FileFacts(
                path,
                True,
                format="qcow2",
                internal_snapshots=tuple(tags.get(path, ())),
                virtual_size=64 * MiB,
                cluster_size=65536,
                length=1,
                mtime_ns=1,
            )
            for path in {c.source.path for c in caps}
        },
        target_dirs={c.disk: "/images" for c in caps},
        estimates={(c.disk, c.snapshot): 2 * MiB for c in caps},
        overlay_bytes={c.source.path: 196608 for c in caps},
        filesystems={"/images": Filesystem(1, 10 * MiB)},
    )
    defaults.update(overrides)
    return DomainFacts(**{**base.__dict__, **defaults})


TREE = [
    snapshot_xml("a", None, 1, {"vda": "internal"}),
    snapshot_xml("b", "a", 2, {"vda": "internal"}),
]
