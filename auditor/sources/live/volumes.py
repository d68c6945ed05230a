"""Storage volumes (disks of type='volume') resolved over a host's read-only connection:
each pool and each volume looked up once per host, and classified by the volume's own type."""

from __future__ import annotations

import threading

import libvirt

from auditor.display import one_line
from auditor.sources.xml.disk_source import Volume, VolumeResolver


def volume_resolver(
    conn: libvirt.virConnect, found: dict[tuple[str, str], Volume] | None = None
) -> VolumeResolver:
    """Looks storage volumes up over CONN (read-only calls), each pool and each volume once
    per host: many disks and snapshots name the same few. FOUND, when given, keeps every
    answer by (pool, volume), for a bundle to carry."""
    pools: dict[str, libvirt.virStoragePool | str] = {}
    found = {} if found is None else found
    lock = threading.Lock()

    def pool_named(name: str) -> libvirt.virStoragePool | str:
        if name not in pools:
            try:
                pools[name] = conn.storagePoolLookupByName(name)
            except libvirt.libvirtError as exc:
                pools[name] = f"pool {name}: {one_line(exc)}"
        return pools[name]

    def resolve(pool_name: str, name: str) -> Volume:
        with lock:  # domains are scanned by several threads; one lookup per volume
            if (pool_name, name) not in found:
                pool = pool_named(pool_name)
                found[pool_name, name] = (
                    Volume(None, None, pool) if isinstance(pool, str) else _volume(pool, name)
                )
            return found[pool_name, name]

    return resolve


# virStorageVolType, by value: what the volume's data sits on.
_VOLUME_TYPES = {
    libvirt.VIR_STORAGE_VOL_FILE: "file",
    libvirt.VIR_STORAGE_VOL_BLOCK: "block",
    libvirt.VIR_STORAGE_VOL_DIR: "dir",
    libvirt.VIR_STORAGE_VOL_NETWORK: "network",
    libvirt.VIR_STORAGE_VOL_NETDIR: "netdir",
    libvirt.VIR_STORAGE_VOL_PLOOP: "ploop",
}


def _volume(pool: libvirt.virStoragePool, name: str) -> Volume:
    try:
        volume = pool.storageVolLookupByName(name)
        kind = volume.info()[0]
        path = volume.path()
    except libvirt.libvirtError as exc:
        return Volume(None, None, f"volume {name}: {one_line(exc)}")
    return Volume(_VOLUME_TYPES.get(kind, f"type {kind}"), path)
