"""Snapshot XML → model. The only place that knows libvirt's XML layout (with disk_source.py,
which reads what a `<disk>`'s source names).

XML comes from hosts and is untrusted: the parser never expands entities, never loads a DTD
and never touches the network.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from sys import intern
from typing import TypedDict

from lxml import etree

from auditor.model import DiskMode, DiskSource, DomainDisk, MemoryMode, Snapshot, SnapshotDisk
from auditor.sources.xml.disk_source import VolumeResolver, disk_source, source_path

GUEST_AGENT_CHANNEL = "org.qemu.guest_agent.0"

_local = threading.local()


def _parser() -> etree.XMLParser:
    # One parser per thread: lxml serialises threads that share a parser, and frees the GIL
    # while parsing only with a parser of the thread's own.
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            huge_tree=False,
            remove_comments=True,
            remove_pis=True,
        )
    return parser


class SnapshotXMLError(ValueError):
    """The snapshot's XML is not something this parser can read."""


def parse_xml(text: str | bytes) -> etree._Element:
    data = text.encode() if isinstance(text, str) else text
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        # libxml2 ends its message with a newline, before lxml's ", line N, column M".
        raise SnapshotXMLError(f"invalid XML: {''.join(exc.msg.splitlines())}") from None
    if root is None:
        raise SnapshotXMLError("invalid XML: empty document")
    # libvirt never writes a DTD. The parser loads none and expands no entity in text, but
    # libxml2 still puts an internal entity's text in an attribute (`file='&e;'`): refused.
    if root.getroottree().docinfo.internalDTD is not None:
        raise SnapshotXMLError("holds a DTD or entity declarations: not read")
    return root


def parse_snapshot(
    text: str | bytes,
    *,
    host: str,
    domain: str,
    domain_uuid: str,
    current: bool | None,
    volumes: VolumeResolver | None = None,
) -> Snapshot:
    """One snapshot, with every disk resolved as libvirt would (see resolve_disks). CURRENT
    None: read it from the file, as libvirt's own metadata files mark the current snapshot
    (`<active>1</active>`)."""
    return Snapshot(**snapshot_fields(text, host, domain, domain_uuid, current, volumes))


class SnapshotFields(TypedDict):
    """A Snapshot's fields but has_children, which is known only once all of the domain's
    snapshots are read: build_domain then builds each Snapshot once."""

    host: str
    domain: str
    domain_uuid: str
    name: str
    state: str
    created: datetime | None
    parent: str | None
    current: bool
    description: str | None
    memory: str
    memory_file: str | None
    disks: tuple[SnapshotDisk, ...]
    has_domain_definition: bool
    has_guest_agent: bool
    revert_overlays: tuple[str, ...]


def snapshot_fields(
    text: str | bytes,
    host: str,
    domain: str,
    domain_uuid: str,
    current: bool | None,
    volumes: VolumeResolver | None = None,
    definitions: dict | None = None,
) -> SnapshotFields:
    """parse_snapshot's fields by name, all but has_children.
    DEFINITIONS, a dict kept over the snapshots of one domain (and one VOLUMES), shares what
    an embedded definition resolves to between the snapshots that embed the same one."""
    root = parse_xml(text)
    if root.tag != "domainsnapshot":
        raise SnapshotXMLError(f"root element is <{root.tag!s}>, expected <domainsnapshot>")
    # One pass over the top-level elements: snapshots are parsed by the ten thousand.
    top = _first_children(root)
    name = _word(top.get("name"))
    if not name:
        raise SnapshotXMLError("snapshot has no <name>")
    state = _word(top.get("state")) or ""
    memory, memory_file, memory_mode = top.get("memory"), None, None
    if memory is not None:
        memory_file, memory_mode = memory.get("file"), _intern(memory.get("snapshot"))
    memory_mode = memory_mode or ("external" if memory_file else _default_memory(state))
    definition = top.get("domain")
    # What find("devices") gives: ElementPath takes the first of iterchildren("devices").
    devices = None if definition is None else next(definition.iterchildren("devices"), None)
    created = _parse_time(_text(top.get("creationTime")))
    parent = top.get("parent")
    if parent is not None:  # findtext("name"): None without a <name>, else its text or ""
        parent = next(parent.iterchildren("name"), None)
        parent = _word(parent)
    listed = _listed(top.get("disks"))  # its errors come before any volume is looked up
    domain_disks, agent = _devices(devices, volumes, definitions)
    return {
        "host": host,
        "domain": domain,
        "domain_uuid": domain_uuid,
        "name": name,
        "state": state,
        "created": created,
        "parent": parent,
        "current": _text(top.get("active")) == "1" if current is None else current,
        "description": _text(top.get("description")),
        "memory": memory_mode,
        "memory_file": memory_file,
        "disks": _align(listed, state, memory_mode, domain_disks),
        "has_domain_definition": devices is not None,
        "has_guest_agent": agent,
        "revert_overlays": _revert_overlays(top.get("revertDisks")),
    }


def parse_domain_disks(
    text: str | bytes, volumes: VolumeResolver | None = None
) -> tuple[DomainDisk, ...]:
    """The disks of a domain definition (`virDomainGetXMLDesc`)."""
    root = parse_xml(text)
    if root.tag != "domain":
        raise SnapshotXMLError(f"root element is <{root.tag!s}>, expected <domain>")
    disks = []
    for disk in root.iterfind("devices/disk"):
        parts = _first_children(disk)
        target = parts.get("target")
        if target is None or not target.get("dev"):
            continue
        source_type, source = disk.get("type", "file"), parts.get("source")
        path = source_path(source_type, source)
        resolved = disk_source(source_type, source, path, parts, volumes)
        readonly = "readonly" in parts or disk.get("device") == "cdrom"
        disks.append(DomainDisk(target.get("dev"), resolved, disk.get("device", "disk"), readonly))
    return tuple(disks)


def _first_children(element) -> dict:
    """Tag -> the first child with it (what find(tag) gives), for all tags in one pass."""
    found: dict = {}
    for child in element:
        found.setdefault(child.tag, child)
    return found


def _revert_overlays(revert_disks) -> tuple[str, ...]:
    disks = revert_disks.iterchildren("disk") if revert_disks is not None else ()
    paths = (source_path(d.get("type", "file"), d.find("source")) for d in disks)
    return tuple(p for p in paths if p)


def _text(element) -> str | None:
    return None if element is None else (element.text or "")


# Words that recur in every snapshot (states, modes, types, formats, the snapshots' names,
# each also its children's parent) are kept once, not once per snapshot: a fifth of a large
# model's memory, and what worker processes send back is smaller.
def _word(element) -> str | None:
    return None if element is None else intern(element.text or "")


def _intern(text: str | None) -> str | None:
    return None if text is None else intern(text)


def _default_memory(state: str) -> MemoryMode:
    # libvirt infers internal memory for snapshots of online guests when <memory> gives
    # neither snapshot= nor file=. A snapshot without a state, or with the legacy
    # `nostate` (which libvirt no longer accepts), says nothing of a running guest.
    return "no" if state in ("shutoff", "disk-snapshot", "", "nostate") else "internal"


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromtimestamp(int(text), tz=UTC)
    except (ValueError, OverflowError, OSError):
        raise SnapshotXMLError(f"invalid <creationTime> {text!r}") from None


def resolve_disks(disks, state: str, memory: str, devices, volumes) -> tuple[SnapshotDisk, ...]:
    """Every disk's effective mode, source and storage, by libvirt's own rules, in one place.

    libvirt reads each listed `<disks>/<disk>` first (virDomainSnapshotDiskDefParseXML): its
    `snapshot=`, else `external` when it names a new image (a `<source>` path or a
    `<driver type>`), else no mode yet. Whenever it creates or redefines a snapshot it then
    aligns that list with the domain's disks (virDomainSnapshotAlignDisks):

    - a listed disk is the domain disk with that target name or, for a name starting with
      `/`, the one domain disk whose source is that path;
    - the snapshot's default location is `external` when it is disk-only (`disk-snapshot`),
      saves its memory externally, or lists an external disk, and `internal` otherwise; an
      internal snapshot must be uniformly internal (a QEMU savevm covers every disk);
    - a listed disk without a mode takes the domain disk's own `snapshot=` if it has one
      (an internal snapshot takes only `snapshot='no'` from it), else the default location;
    - a disk the snapshot does not list is not captured when its drive is empty; else it
      takes the domain disk's own `snapshot=` if any (with no internal restriction), else
      the default location.

    Metadata that libvirt never aligned (test driver, hand-written or older files) is judged
    as libvirt would align it. A listed disk that matches no domain disk (or a snapshot
    without an embedded domain) keeps its own mode, else the default location.
    A disk's storage is its source type; a `type='volume'` disk is resolved by VOLUMES
    (pool, volume) -> Volume into the volume's own type and target path.
    """
    return _align(_listed(disks), state, memory, _devices(devices, volumes, None)[0])


def _listed(disks) -> list[tuple]:
    """The snapshot's `<disks>/<disk>`s: (name, own mode or None, the disk, its children)."""
    listed = []
    for disk in disks.iterchildren("disk") if disks is not None else ():
        if not (name := disk.get("name")):
            raise SnapshotXMLError("a <disks>/<disk> has no name")
        parts = _first_children(disk)
        listed.append((name, _listed_mode(disk, parts), disk, parts))
    return listed


def _devices(devices, volumes, definitions: dict | None) -> tuple[tuple, bool]:
    """The embedded domain's disks ((target, own snapshot=, device, readonly, source path,
    resolved source) each, and the targets) and whether it has a guest agent channel; kept
    in DEFINITIONS by its <disk>s and <channel>s as serialised, all that is read here: equal
    bytes are equal elements, attributes, order and namespaces, for less than reading them
    (and than serialising all of <devices>, most of a definition libvirt writes)."""
    if devices is None:
        return ((), frozenset()), False
    if definitions is not None:
        read = devices.iterchildren("disk", "channel")
        key = b"".join([etree.tostring(element, with_tail=False) for element in read])
        if (found := definitions.get(key)) is not None:
            return found
    disks = []
    for disk in devices.iterchildren("disk"):
        parts = _first_children(disk)
        target = disk.get("dev") if (t := parts.get("target")) is None else t.get("dev")
        if target:
            target, source_type = intern(target), intern(disk.get("type", "file"))
            source = parts.get("source")
            path = source_path(source_type, source)
            resolved = disk_source(source_type, source, path, parts, volumes)
            device = disk.get("device")
            readonly = "readonly" in parts or device == "cdrom"
            device = "disk" if device is None else intern(device)  # get("device", "disk")
            disks.append((target, disk.get("snapshot"), device, readonly, path, resolved))
    agent = any(
        target.get("name") == GUEST_AGENT_CHANNEL
        for channel in devices.iterchildren("channel")
        for target in channel.iterchildren("target")
    )
    found = (tuple(disks), frozenset(d[0] for d in disks)), agent
    if definitions is not None:
        definitions[key] = found
    return found


def _align(listed: list, state: str, memory: str, domain_disks: tuple) -> tuple:
    disks, targets = domain_disks
    external = state == "disk-snapshot" or memory == "external"
    external = external or any(listing[1] == "external" for listing in listed)
    default: DiskMode = "external" if external else "internal"
    matched, orphans = {}, []
    for listing in listed:
        target = _match(listing[0], disks, targets)
        if target is None or target in matched:
            orphans.append(listing)  # libvirt would refuse: kept, not lost
        else:
            matched[target] = listing
    resolved = []
    for target, own, device, readonly, _, source in disks:
        listing = matched.get(target)
        if listing is None:
            mode, defaulted, overlay = ("no" if source is None else own or default), True, None
        else:
            mode = listing[1]
            if defaulted := mode is None:
                mode = own if own and (default == "external" or own == "no") else default
            overlay = _overlay(listing, mode)
        disk = (target, mode, overlay, source, device, readonly, defaulted, listing is not None)
        resolved.append(SnapshotDisk(*disk))
    for listing in orphans:
        name, mode = listing[0], listing[1] or default
        overlay = _overlay(listing, mode)
        resolved.append(SnapshotDisk(name, mode, overlay, None, None, False, listing[1] is None))
    return tuple(resolved)


def _listed_mode(snapdisk, parts: dict) -> str | None:
    if mode := snapdisk.get("snapshot"):
        return intern(mode)
    driver = parts.get("driver")
    names_image = source_path(snapdisk.get("type", "file"), parts.get("source"))
    return "external" if names_image or (driver is not None and driver.get("type")) else None


def _match(name: str, disks: tuple, targets: frozenset) -> str | None:
    """The target of the domain disk NAME means (libvirt's virDomainDiskByName): a target
    name, or a source path when it starts with '/', which must name exactly one disk."""
    if not name.startswith("/"):
        return name if name in targets else None
    found = [disk[0] for disk in disks if disk[4] == name]
    return found[0] if len(found) == 1 else None


def _overlay(listing: tuple, mode: str) -> DiskSource | None:
    if mode != "external":
        return None
    _, _, element, parts = listing
    driver = parts.get("driver")
    source_type = intern(element.get("type", "file"))
    path = source_path(source_type, parts.get("source"))
    form = None if driver is None else _intern(driver.get("type"))
    return DiskSource(source_type, path, form)
