"""Snapshot XML → model. The only place that knows libvirt's XML layout.

XML comes from hosts and is untrusted: the parser never expands entities, never loads a DTD
and never touches the network.
"""

from __future__ import annotations

import threading
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
    text: str | bytes, *, host: str, domain: str, domain_uuid: str, current: bool | None
) -> Snapshot:
    """CURRENT None: read it from the file, as libvirt's own metadata files mark the current
    snapshot (`<active>1</active>`)."""
    root = parse_xml(text)
    if root.tag != "domainsnapshot":
        raise SnapshotXMLError(f"root element is <{root.tag}>, expected <domainsnapshot>")
    # One pass over the top-level elements: snapshots are parsed by the ten thousand.
    top: dict = {}
    for child in root:
        top.setdefault(child.tag, child)
    name = _text(top.get("name"))
    if not name:
        raise SnapshotXMLError("snapshot has no <name>")
    state = _text(top.get("state")) or ""
    memory = top.get("memory")
    memory_mode = (memory.get("snapshot") if memory is not None else None) or _default_memory(state)
    definition = top.get("domain")
    devices = definition.find("devices") if definition is not None else None
    parent = top.get("parent")
    if current is None:
        current = _text(top.get("active")) == "1"
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
        memory_file=memory.get("file") if memory is not None else None,
        disks=_join_disks(top.get("disks"), state, memory_mode, devices),
        revert_overlays=_revert_overlays(top.get("revertDisks")),
        has_domain_definition=devices is not None,
        has_guest_agent=devices is not None
        and any(
            target.get("name") == GUEST_AGENT_CHANNEL
            for target in devices.iterfind("channel/target")
        ),
    )


def parse_domain_disks(text: str | bytes) -> tuple[DomainDisk, ...]:
    """The disks of a domain definition (`virDomainGetXMLDesc`)."""
    root = parse_xml(text)
    if root.tag != "domain":
        raise SnapshotXMLError(f"root element is <{root.tag}>, expected <domain>")
    disks = []
    for disk in root.iterfind("devices/disk"):
        target = disk.find("target")
        if target is None or not target.get("dev"):
            continue
        disks.append(
            DomainDisk(
                name=target.get("dev"),
                source=_domain_disk_source(disk),
                device=disk.get("device", "disk"),
                readonly=disk.find("readonly") is not None or disk.get("device") == "cdrom",
            )
        )
    return tuple(disks)


def _revert_overlays(revert_disks) -> tuple[str, ...]:
    if revert_disks is None:
        return ()
    paths = (
        _source_path(disk.get("type", "file"), disk.find("source"))
        for disk in revert_disks.iterfind("disk")
    )
    return tuple(p for p in paths if p)


def _text(element) -> str | None:
    return None if element is None else (element.text or "")


def _default_memory(state: str) -> str:
    # libvirt infers internal memory for snapshots of running guests when <memory> is absent.
    return "no" if state in ("shutoff", "disk-snapshot", "") else "internal"


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromtimestamp(int(text), tz=UTC)
    except (ValueError, OverflowError, OSError):
        raise SnapshotXMLError(f"invalid <creationTime> {text!r}") from None


def _join_disks(disks, state: str, memory: str, devices) -> tuple[SnapshotDisk, ...]:
    listed = {}
    for disk in disks.iterfind("disk") if disks is not None else ():
        name = disk.get("name")
        if not name:
            raise SnapshotXMLError("a <disks>/<disk> has no name")
        listed[name] = disk
    default = _default_disk_mode(state, memory, listed.values())
    disks = []
    for domdisk in devices.iterfind("disk") if devices is not None else ():
        target = domdisk.get("dev") if (t := domdisk.find("target")) is None else t.get("dev")
        if not target:
            continue
        snapdisk = listed.pop(target, None)
        state_source = _domain_disk_source(domdisk)
        if snapdisk is not None:
            mode, defaulted = _disk_mode(snapdisk), False
        else:
            # libvirt's own rule for disks a snapshot does not list: an empty drive is not
            # captured, then the domain disk's own snapshot= attribute, then the default.
            defaulted = True
            mode = "no" if state_source is None else domdisk.get("snapshot") or default
        disks.append(
            SnapshotDisk(
                name=target,
                mode=mode,
                overlay=_overlay(snapdisk, mode),
                state_image=state_source,
                device=domdisk.get("device", "disk"),
                readonly=domdisk.find("readonly") is not None or domdisk.get("device") == "cdrom",
                defaulted=defaulted,
            )
        )
    # Disks listed in the snapshot but absent from (or without) an embedded domain.
    for name, snapdisk in listed.items():
        mode = _disk_mode(snapdisk)
        disks.append(
            SnapshotDisk(
                name=name,
                mode=mode,
                overlay=_overlay(snapdisk, mode),
                state_image=None,
                device=None,
                readonly=False,
            )
        )
    return tuple(disks)


def _default_disk_mode(state: str, memory: str, listed) -> str:
    """libvirt's default location for disks a snapshot does not list.

    External when the snapshot is external in any way (disk-only state, external memory or
    an external disk); internal otherwise, as `virsh snapshot-create-as` does on qcow2.
    """
    if state == "disk-snapshot" or memory == "external":
        return "external"
    if any(_disk_mode(d) == "external" for d in listed):
        return "external"
    return "internal"


def _disk_mode(snapdisk) -> str:
    mode = snapdisk.get("snapshot")
    if mode:
        return mode
    # libvirt treats a listed disk that names a new file as external.
    return "external" if snapdisk.find("source") is not None else "internal"


def _overlay(snapdisk, mode: str) -> DiskSource | None:
    if snapdisk is None or mode != "external":
        return None
    driver = snapdisk.find("driver")
    source_type = snapdisk.get("type", "file")
    return DiskSource(
        type=source_type,
        path=_source_path(source_type, snapdisk.find("source")),
        format=driver.get("type") if driver is not None else None,
    )


def _domain_disk_source(domdisk) -> DiskSource | None:
    """The disk's source in the embedded domain, or None for an empty drive."""
    source_type = domdisk.get("type", "file")
    path = _source_path(source_type, domdisk.find("source"))
    if path is None:
        return None
    driver = domdisk.find("driver")
    return DiskSource(
        type=source_type, path=path, format=driver.get("type") if driver is not None else None
    )


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
            hosts = [
                h.get("name") + (f":{h.get('port')}" if h.get("port") else "")
                for h in source.iterfind("host")
                if h.get("name")
            ]
            where = f"{protocol}://{hosts[0] if hosts else ''}/{name or ''}"
            return where if protocol else name
        case "volume":
            return f"{source.get('pool')}/{source.get('volume')}"
        case "nvme":
            address = source.find("address")
            pci = (
                ""
                if address is None
                else ":".join(address.get(k, "") for k in ("domain", "bus", "slot", "function"))
            )
            return f"nvme://{pci}/{source.get('namespace', '')}"
        case _:
            return source.get("path") or source.get("file") or source.get("dev") or source_type
