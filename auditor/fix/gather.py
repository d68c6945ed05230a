"""What the live host says about a domain (facts.py): gathered once, before planning, with all
the I/O (libvirt over a read-write connection, `qemu-img info`, qcow2 tables, free space)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import replace

import libvirt

from auditor import safefs
from auditor.display import Problem
from auditor.fix import images
from auditor.fix.facts import (
    DEFAULT_CLUSTER,
    DomainFacts,
    Filesystem,
    SnapshotFacts,
)
from auditor.fix.tree import Capture, parents_first
from auditor.images.qcow2 import Qcow2Error, Qcow2Tables, backing_chain
from auditor.model import FileFacts
from auditor.sources.files.checks import files_visible
from auditor.sources.live.connection import open_read_write
from auditor.sources.xml.parser import SnapshotXMLError, parse_domain_disks, parse_snapshot

SECURE_DOMAIN = libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE
# Secrets stay in the XML so that redefinition and rollback are exact; the journal that
# stores them is private to root.
SECURE_SNAPSHOT = libvirt.VIR_DOMAIN_SNAPSHOT_XML_SECURE

STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: "in no state",
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "blocked",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutting down",
    libvirt.VIR_DOMAIN_SHUTOFF: "shut off",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "suspended",
}


class ConnectionRefused(Problem):
    """The connection cannot be used for fix mode; the message says why, in one line."""


def connect(uri: str | None) -> libvirt.virConnect:
    """A read-write connection to a local QEMU driver, or ConnectionRefused."""
    if uri is not None and not files_visible(uri):
        raise ConnectionRefused(_not_local(uri))
    conn = open_read_write(uri)
    actual = conn.getURI()
    if not files_visible(actual):
        conn.close()
        raise ConnectionRefused(_not_local(actual))
    try:
        conn.getDomainCapabilities()  # harmless, and refused on a read-only connection
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_OPERATION_DENIED:
            conn.close()
            raise ConnectionRefused(
                f"fix needs a read-write connection: {uri or actual} is read-only "
                "(connect to the daemon's read-write socket, as root)"
            ) from None
    return conn


def _not_local(uri: str) -> str:
    return (
        f"fix runs qemu-img on the images itself, so it needs a local QEMU connection; "
        f"{uri} is not one (run snapaudit fix on the hypervisor host)"
    )


def read_domain(
    conn: libvirt.virConnect, dom: libvirt.virDomain, *, host: str, target_dir: str | None
) -> DomainFacts:
    name, uuid = dom.name(), dom.UUIDString()
    xml = dom.XMLDesc(SECURE_DOMAIN)
    active = bool(dom.isActive())
    snapshots = []
    for snap in dom.listAllSnapshots(0):
        snap_xml = snap.getXMLDesc(SECURE_SNAPSHOT)
        model = parse_snapshot(
            snap_xml, host=host, domain=name, domain_uuid=uuid, current=bool(snap.isCurrent())
        )
        snapshots.append(SnapshotFacts(snap_xml, model))
    order = {s.name: i for i, s in enumerate(parents_first([s.model for s in snapshots]))}
    snapshots.sort(key=lambda s: order[s.model.name])
    facts = DomainFacts(
        host=host,
        name=name,
        uuid=uuid,
        state=STATES.get(dom.state()[0], "in an unknown state"),
        active=active,
        managed_save=bool(dom.hasManagedSaveImage(0)),
        xml=xml,
        disks=parse_domain_disks(xml),
        snapshots=tuple(snapshots),
        current=next((s.model.name for s in snapshots if s.model.current), None),
    )
    facts = replace(facts, overlays=_overlays(facts))
    facts = _with_files(facts, target_dir)
    mine = [c.source.path for c in facts.captures if c.source.path] + list(facts.overlays)
    return replace(facts, elsewhere=_used_elsewhere(conn, uuid, mine))


def _overlays(facts: DomainFacts) -> tuple[str, ...]:
    """The file overlays the domain's external snapshots name, and those libvirt made
    reverting to them."""
    paths: list[str] = []
    for snap in (s.model for s in facts.snapshots):
        for disk in snap.disks:
            overlay = disk.overlay
            if disk.mode == "external" and overlay and overlay.type == "file" and overlay.path:
                paths.append(overlay.path)
        paths += snap.revert_overlays
    return tuple(dict.fromkeys(paths))


def _used_elsewhere(conn: libvirt.virConnect, uuid: str, mine: list[str]) -> frozenset[str]:
    """Which of MINE another domain of the host uses: as a disk, in a snapshot, or in the
    backing chain of one of those (linked clones of a shared template)."""
    used: set[str] = set()
    for dom in conn.listAllDomains(0):
        try:
            if dom.UUIDString() == uuid:
                continue
            sources = [d.source for d in parse_domain_disks(dom.XMLDesc(0))]
            for snap in dom.listAllSnapshots(0):
                model = parse_snapshot(
                    snap.getXMLDesc(0), host="", domain="", domain_uuid="", current=False
                )
                sources += [d.overlay for d in model.disks] + [d.state_image for d in model.disks]
                used.update(model.revert_overlays)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() in (
                libvirt.VIR_ERR_NO_DOMAIN,
                libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT,
            ):
                continue  # gone since it was listed
            return frozenset(mine)  # what it uses is unknown: keep every original
        except SnapshotXMLError:
            return frozenset(mine)
        used.update(s.path for s in sources if s is not None and s.type == "file" and s.path)
    for path in list(used):
        used.update(backing_chain(path))
    real = {os.path.realpath(p) for p in used}
    return frozenset(p for p in mine if p in used or os.path.realpath(p) in real)


def _with_files(facts: DomainFacts, target_dir: str | None) -> DomainFacts:
    caps = facts.captures
    sources = {c.source.path: c.source.format for c in caps if c.source.type == "file"}
    sources.update((path, "qcow2") for path in facts.overlays if path not in sources)
    found = {
        path: image_facts(path, fmt, force_share=facts.active)
        for path, fmt in sources.items()
        if path
    }
    dirs = {}
    for cap in caps:
        if cap.snapshot is None and cap.source.path:  # beside the image the domain uses now
            dirs[cap.disk] = os.path.abspath(target_dir or os.path.dirname(cap.source.path))
    filesystems: dict[str, Filesystem] = {}
    existing: set[str] = set()
    for directory in set(dirs.values()):
        try:
            stat, st = os.statvfs(directory), os.stat(directory)
            filesystems[directory] = Filesystem(
                st.st_dev, stat.f_bavail * stat.f_frsize, st.st_uid, st.st_mode
            )
            existing.update(os.path.join(directory, entry) for entry in os.listdir(directory))
        except OSError:
            pass  # the planner refuses a directory it knows nothing about
    overhead: dict[tuple[int, int], int] = {}
    estimates = {} if facts.active else _estimates(caps, found, overhead)
    overlay_bytes = {}
    for path, image in found.items():
        if image.virtual_size and not facts.active:
            with contextlib.suppress(images.ImageError):
                overlay_bytes[path] = _overhead(image, overhead)
    return replace(
        facts,
        images=found,
        target_dirs=dirs,
        estimates=estimates,
        overlay_bytes=overlay_bytes,
        filesystems=filesystems,
        existing=frozenset(existing),
        trusted_uids=safefs.trusted_uids(),
    )


def image_facts(path: str, fmt: str | None, *, force_share: bool = False) -> FileFacts:
    # Fix holds, checks and removes an original by its own name, never through a link (a
    # link's size and mtime are not the image's): a disk defined on a symlink is refused.
    if os.path.islink(path):
        error = "it is a symlink, which fix does not follow: define the disk on the image itself"
        return FileFacts(path, exists=True, error=error)
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return FileFacts(path, exists=False)
    except OSError as exc:
        return FileFacts(path, exists=True, error=exc.strerror)
    try:
        data = images.info(path, fmt, force_share=force_share)
    except images.ImageError as exc:
        return FileFacts(path, exists=True, error=str(exc))
    return FileFacts(
        path,
        exists=True,
        format=data.get("format"),
        virtual_size=data.get("virtual-size"),
        cluster_size=data.get("cluster-size"),
        internal_snapshots=tuple(s["name"] for s in data.get("snapshots", ())),
        length=stat.st_size,
        mtime_ns=stat.st_mtime_ns,
        device=stat.st_dev,
        inode=stat.st_ino,
    )


def _overhead(image: FileFacts, cache: dict[tuple[int, int], int]) -> int:
    key = (image.virtual_size or 0, image.cluster_size or DEFAULT_CLUSTER)
    if key not in cache:
        cache[key] = images.metadata_bytes(*key)
    return cache[key]


def _estimates(
    caps: list[Capture], found: Mapping[str, FileFacts], overhead: dict[tuple[int, int], int]
) -> dict[tuple[str, str | None], int]:
    """Full images: what `qemu-img measure` says a copy needs. Overlays: the clusters whose
    table entries differ from the base snapshot's, plus an empty image's metadata."""
    by_key = {(c.disk, c.snapshot): c for c in caps}
    result = {}
    for cap in caps:
        image = found.get(cap.source.path or "")
        if image is None or not image.exists or image.error or not image.format:
            continue
        try:
            result[(cap.disk, cap.snapshot)] = _estimate(cap, by_key, image, overhead)
        except (images.ImageError, OSError):
            continue  # the planner refuses what it cannot size
    return result


def _estimate(cap: Capture, by_key: dict, image: FileFacts, overhead: dict) -> int:
    base = by_key.get((cap.disk, cap.base)) if cap.base else None
    if base is not None and base.source.path == image.path and image.format == "qcow2":
        # (Both read through the same backing chain: only this image's tables differ.)
        try:
            with Qcow2Tables(image.path) as tables:
                differing = tables.differing_bytes(cap.tag, base.tag)
        except Qcow2Error:
            pass
        else:
            return differing + _overhead(image, overhead)
    # A full copy bounds any overlay from above.
    return images.measure(image.path, image.format or "qcow2", cap.tag)
