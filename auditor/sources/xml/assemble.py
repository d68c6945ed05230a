"""From a host's raw metadata (the XML libvirt returns, whichever way it was read) to the
model: the one place where a domain and its snapshots are put together, for live hosts,
bundles and metadata directories alike."""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from auditor.model import Domain, Host, Skipped, Snapshot
from auditor.sources.xml.disk_source import Volume, VolumeResolver
from auditor.sources.xml.parser import (
    SnapshotFields,
    SnapshotXMLError,
    parse_domain_disks,
    parse_xml,
    snapshot_fields,
)


@dataclass(frozen=True, slots=True)
class RawSnapshot:
    name: str  # as listed (a file name for metadata directories)
    xml: str | bytes
    current: bool | None  # None: the XML itself says (<active>1</active>)


@dataclass(frozen=True, slots=True)
class RawDomain:
    name: str
    uuid: str
    definition: str | bytes | None  # the domain's own XML; None when not read
    snapshots: tuple[RawSnapshot, ...]


def build_domain(
    host: str, raw: RawDomain, volumes: VolumeResolver | None = None
) -> tuple[Domain | None, list[Skipped]]:
    """The domain with its snapshots, oldest first; what cannot be parsed is skipped."""
    try:
        definition = raw.definition
        disks = parse_domain_disks(definition, volumes) if definition is not None else ()
    except SnapshotXMLError as exc:
        return None, [Skipped(host, raw.name, None, f"domain definition: {exc}")]
    fields, skipped = [], []
    definitions: dict = {}  # a domain's snapshots mostly embed one same definition
    for snap in raw.snapshots:
        try:
            fields.append(
                snapshot_fields(
                    snap.xml, host, raw.name, raw.uuid, snap.current, volumes, definitions
                )
            )
        except SnapshotXMLError as exc:
            skipped.append(Skipped(host, raw.name, snap.name, str(exc)))
    # finish_domain's order and has_children, with each Snapshot built once.
    fields.sort(key=_fields_order)
    parents = {f["parent"] for f in fields}
    snapshots = tuple(Snapshot(**f, has_children=f["name"] in parents) for f in fields)
    return Domain(host, raw.name, raw.uuid, disks, snapshots), skipped


def finish_domain(
    host: str, name: str, uuid: str, disks: tuple, snapshots: Iterable[Snapshot]
) -> Domain:
    """The domain, its snapshots oldest first, each knowing whether another names it as
    parent."""
    ordered = sorted(snapshots, key=_snapshot_order)
    parents = {s.parent for s in ordered}
    ordered = [_with_children(s) if s.name in parents else s for s in ordered]
    return Domain(host, name, uuid, disks, tuple(ordered))


_FIELDS = tuple(f.name for f in dataclasses.fields(Snapshot) if f.init)
_values = operator.attrgetter(*_FIELDS)


def _with_children(s: Snapshot) -> Snapshot:
    """dataclasses.replace(s, has_children=True), at a third of its cost: most snapshots
    have children."""
    values = dict(zip(_FIELDS, _values(s), strict=True))
    values["has_children"] = True
    return Snapshot(**values)


def _snapshot_order(s: Snapshot):
    return (s.created is None, s.created.timestamp() if s.created else 0, s.name)


def _fields_order(f: SnapshotFields):
    created = f["created"]
    return (created is None, created.timestamp() if created else 0, f["name"])


@dataclass(frozen=True, slots=True)
class RawHost:
    """Everything read off one host before parsing: what `collect` stores in a bundle."""

    host: Host
    capabilities: str | None
    domains: tuple[RawDomain, ...]
    skipped: tuple[Skipped, ...] = ()
    # Storage volumes the disks name, as the host resolved them: (pool, volume) → Volume.
    volumes: Mapping[tuple[str, str], Volume] = field(default_factory=dict)


def external_snapshot_revert(capabilities: str | bytes | None) -> bool | None:
    """Whether libvirt can revert to and delete external snapshots (`<externalSnapshot/>`
    among the guest features of its capabilities); None when unknown."""
    if capabilities is None:
        return None
    try:
        parsed = parse_xml(capabilities)
    except SnapshotXMLError:
        return None
    return parsed.find("guest/features/externalSnapshot") is not None
