"""A `<disk>` element's source: the path it names (a file, a device, a network URL, a
volume...) and what it resolves to, storage volumes looked up on the host they came from."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from sys import intern

from auditor.model import DiskSource


@dataclass(frozen=True, slots=True)
class Volume:
    """What a host says about a storage volume a disk names: the volume's own type (file,
    block, dir, network, netdir, ploop) and target path, or why it could not be looked up."""

    type: str | None
    path: str | None
    error: str | None = None


# Looks a volume up by (pool, volume) on the host the XML came from.
VolumeResolver = Callable[[str, str], Volume]


def disk_source(source_type, source, path, parts: dict, volumes) -> DiskSource | None:
    """A domain disk's source (PATH: its source_path), or None for an empty drive."""
    if path is None:
        return None
    driver = parts.get("driver")
    form = driver.get("type") if driver is not None else None
    form = intern(form) if form else form
    if source_type != "volume":
        return DiskSource(source_type, path, form)
    pool, name = source.get("pool"), source.get("volume")
    if volumes is None:  # not scanned over a connection: the volume stays what it says
        return DiskSource("volume", path, form, volume=path)
    if not pool or not name:
        return DiskSource("volume", path, form, volume=path, unresolved="no pool or volume named")
    found = volumes(pool, name)
    if found.error is not None or found.type is None:
        return DiskSource("volume", path, form, volume=path, unresolved=found.error or "unknown")
    return DiskSource(found.type, found.path or path, form, volume=path)


def source_path(source_type: str, source) -> str | None:
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


def recorded_resolver(found: dict[tuple[str, str], Volume]) -> VolumeResolver:
    """The answers a bundle recorded when it was collected; nothing is looked up."""

    def resolve(pool_name: str, name: str) -> Volume:
        return found.get((pool_name, name)) or Volume(None, None, "not recorded in the bundle")

    return resolve
