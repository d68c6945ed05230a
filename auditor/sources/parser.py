"""Snapshot XML → model. The only place that knows libvirt's XML layout.

XML comes from hosts and is untrusted: the parser never expands entities, never loads a DTD
and never touches the network.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from lxml import etree

from auditor.model import DiskSource, DomainDisk, Snapshot, SnapshotDisk

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


@dataclass(frozen=True, slots=True)
class Volume:
    """What a host says about a storage volume a disk names: the volume's own type (file,
    block, dir, network, netdir, ploop) and target path, or why it could not be looked up."""

    type: str | None
    path: str | None
    error: str | None = None


# Looks a volume up by (pool, volume) on the host the XML came from.
VolumeResolver = Callable[[str, str], Volume]


def parse_xml(text: str | bytes) -> etree._Element:
    data = text.encode() if isinstance(text, str) else text
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise SnapshotXMLError(f"invalid XML: {exc.msg}") from None
    if root is None:
        raise SnapshotXMLError("invalid XML: empty document")
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
    root = parse_xml(text)
    if root.tag != "domainsnapshot":
        raise SnapshotXMLError(f"root element is <{root.tag}>, expected <domainsnapshot>")
    # One pass over the top-level elements: snapshots are parsed by the ten thousand.
    top = _first_children(root)
    name = _text(top.get("name"))
    if not name:
        raise SnapshotXMLError("snapshot has no <name>")
    state = _text(top.get("state")) or ""
    memory = top.get("memory")
    memory_file = memory.get("file") if memory is not None else None
    memory_mode = (memory.get("snapshot") if memory is not None else None) or (
        "external" if memory_file else _default_memory(state)
    )
    definition = top.get("domain")
    devices = definition.find("devices") if definition is not None else None
    parent = top.get("parent")
    current = _text(top.get("active")) == "1" if current is None else current
    return Snapshot(
        host=host,
        domain=domain,
        domain_uuid=domain_uuid,
        name=name,
        state=state,
        created=_parse_time(_text(top.get("creationTime"))),
        parent=parent.findtext("name") if parent is not None else None,
        current=current,
        description=_text(top.get("description")),
        memory=memory_mode,
        memory_file=memory_file,
        disks=resolve_disks(top.get("disks"), state, memory_mode, devices, volumes),
        revert_overlays=_revert_overlays(top.get("revertDisks")),
        has_domain_definition=devices is not None,
        has_guest_agent=devices is not None
        and any(
            target.get("name") == GUEST_AGENT_CHANNEL
            for channel in devices.iterchildren("channel")
            for target in channel.iterchildren("target")
        ),
    )


def parse_domain_disks(
    text: str | bytes, volumes: VolumeResolver | None = None
) -> tuple[DomainDisk, ...]:
    """The disks of a domain definition (`virDomainGetXMLDesc`)."""
    root = parse_xml(text)
    if root.tag != "domain":
        raise SnapshotXMLError(f"root element is <{root.tag}>, expected <domain>")
    disks = []
    for disk in root.iterfind("devices/disk"):
        parts = _first_children(disk)
        target = parts.get("target")
        if target is None or not target.get("dev"):
            continue
        disks.append(
            DomainDisk(
                name=target.get("dev"),
                source=_domain_disk_source(disk, parts, volumes),
                device=disk.get("device", "disk"),
                readonly="readonly" in parts or disk.get("device") == "cdrom",
            )
        )
    return tuple(disks)


def _first_children(element) -> dict:
    """Tag -> the first child with it (what find(tag) gives), for all tags in one pass."""
    found: dict = {}
    for child in element:
        found.setdefault(child.tag, child)
    return found


def _revert_overlays(revert_disks) -> tuple[str, ...]:
    disks = revert_disks.iterchildren("disk") if revert_disks is not None else ()
    paths = (_source_path(d.get("type", "file"), d.find("source")) for d in disks)
    return tuple(p for p in paths if p)


def _text(element) -> str | None:
    return None if element is None else (element.text or "")


def _default_memory(state: str) -> str:
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
    listed = []  # (name, (element, its first children by tag), mode)
    for disk in disks.iterchildren("disk") if disks is not None else ():
        name = disk.get("name")
        if not name:
            raise SnapshotXMLError("a <disks>/<disk> has no name")
        parts = _first_children(disk)
        listed.append((name, (disk, parts), _listed_mode(disk, parts)))
    external = (
        state == "disk-snapshot"
        or memory == "external"
        or any(mode == "external" for _, _, mode in listed)
    )
    default = "external" if external else "internal"
    domain_disks = []  # (target, element, its first children, raw source path, resolved source)
    for domdisk in devices.iterchildren("disk") if devices is not None else ():
        parts = _first_children(domdisk)
        target = domdisk.get("dev") if (t := parts.get("target")) is None else t.get("dev")
        if target:
            raw = _source_path(domdisk.get("type", "file"), parts.get("source"))
            source = _domain_disk_source(domdisk, parts, volumes)
            domain_disks.append((target, domdisk, parts, raw, source))
    matched, orphans = {}, []
    for name, disk, mode in listed:
        target = _match(name, domain_disks)
        if target is None or target in matched:
            orphans.append((name, disk, mode))  # libvirt would refuse: kept, not lost
        else:
            matched[target] = (disk, mode)
    resolved = []
    for target, domdisk, domparts, _, source in domain_disks:
        own = domdisk.get("snapshot")
        snapdisk, mode = matched.get(target, (None, None))
        if snapdisk is not None:
            if mode is None:
                mode = own if own and (default == "external" or own == "no") else default
                defaulted = True
            else:
                defaulted = False
        else:
            mode, defaulted = ("no" if source is None else own or default), True
        resolved.append(
            SnapshotDisk(
                name=target,
                mode=mode,
                overlay=_overlay(snapdisk, mode),
                state_image=source,
                device=domdisk.get("device", "disk"),
                readonly="readonly" in domparts or domdisk.get("device") == "cdrom",
                defaulted=defaulted,
                listed=snapdisk is not None,
            )
        )
    for name, snapdisk, mode in orphans:
        resolved.append(
            SnapshotDisk(
                name=name,
                mode=mode or default,
                overlay=_overlay(snapdisk, mode or default),
                state_image=None,
                device=None,
                readonly=False,
                defaulted=mode is None,
            )
        )
    return tuple(resolved)


def _listed_mode(snapdisk, parts: dict) -> str | None:
    if mode := snapdisk.get("snapshot"):
        return mode
    driver = parts.get("driver")
    names_image = _source_path(snapdisk.get("type", "file"), parts.get("source"))
    return "external" if names_image or (driver is not None and driver.get("type")) else None


def _match(name: str, domain_disks) -> str | None:
    """The target of the domain disk NAME means (libvirt's virDomainDiskByName): a target
    name, or a source path when it starts with '/', which must name exactly one disk."""
    if not name.startswith("/"):
        return name if any(target == name for target, *_ in domain_disks) else None
    found = [target for target, _, _, raw, _ in domain_disks if raw == name]
    return found[0] if len(found) == 1 else None


def _overlay(snapdisk: tuple | None, mode: str) -> DiskSource | None:  # (element, parts)
    if snapdisk is None or mode != "external":
        return None
    element, parts = snapdisk
    driver = parts.get("driver")
    source_type = element.get("type", "file")
    return DiskSource(
        type=source_type,
        path=_source_path(source_type, parts.get("source")),
        format=driver.get("type") if driver is not None else None,
    )


def _domain_disk_source(domdisk, parts: dict, volumes: VolumeResolver | None) -> DiskSource | None:
    """The disk's source in a domain definition, or None for an empty drive."""
    source_type = domdisk.get("type", "file")
    source = parts.get("source")
    path = _source_path(source_type, source)
    if path is None:
        return None
    driver = parts.get("driver")
    form = driver.get("type") if driver is not None else None
    if source_type != "volume":
        return DiskSource(type=source_type, path=path, format=form)
    pool, name = source.get("pool"), source.get("volume")
    if volumes is None:  # not scanned over a connection: the volume stays what it says
        return DiskSource("volume", path, form, volume=path)
    if not pool or not name:
        return DiskSource("volume", path, form, volume=path, unresolved="no pool or volume named")
    found = volumes(pool, name)
    if found.error is not None or found.type is None:
        return DiskSource("volume", path, form, volume=path, unresolved=found.error or "unknown")
    return DiskSource(found.type, found.path or path, form, volume=path)


def _source_path(source_type: str, source) -> str | None:
    if source is None:
        return None
    match source_type:
        case "file":
            return source.get("file")
        case "block":
            return source.get("dev")
        case "dir":
            return source.get("dir")
        case "network":
            protocol, name = source.get("protocol"), source.get("name")
            named = [h for h in source.iterfind("host") if h.get("name")]
            hosts = [h.get("name") + (f":{h.get('port')}" if h.get("port") else "") for h in named]
            where = f"{protocol}://{hosts[0] if hosts else ''}/{name or ''}"
            return where if protocol else name
        case "volume":
            return f"{source.get('pool')}/{source.get('volume')}"
        case "nvme":
            address = source.find("address")
            keys = ("domain", "bus", "slot", "function")
            pci = "" if address is None else ":".join(address.get(k, "") for k in keys)
            return f"nvme://{pci}/{source.get('namespace', '')}"
        case _:
            return source.get("path") or source.get("file") or source.get("dev") or source_type
