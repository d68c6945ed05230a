"""Reads snapshots off libvirt hosts, read-only, into the model.

One read-only connection per host; getCapabilities() and listAllDomains(), then per domain
one listAllSnapshots(), one snapshotCurrent() and one getXMLDesc() per snapshot (plus the
domain's own XMLDesc() when files are checked), and for disks of type='volume' one lookup
per storage pool and per volume, cached for the host. Domains are
fetched by a small thread pool because each call is a round trip to the daemon (libvirt
connections are thread-safe and libvirt-python releases the GIL while it waits). Hosts are
scanned concurrently too, and results are yielded as each host finishes. A host that does not
finish within its time (connect included) is reported as timed out; any exception while
scanning one host becomes that host's error, and the other hosts are still scanned.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable, Iterator

import libvirt

from auditor.display import one_line
from auditor.model import Domain, FileFacts, Host, HostScan, Skipped, Snapshot
from auditor.sources import files
from auditor.sources.connection import open_read_only
from auditor.sources.deadline import Raised, TimedOut, run_all, run_each
from auditor.sources.files import files_visible
from auditor.sources.parser import (
    SnapshotXMLError,
    Volume,
    VolumeResolver,
    parse_domain_disks,
    parse_snapshot,
    parse_xml,
)

# libvirtd serves at most 5 calls at once per client (max_client_requests); beyond about
# that, more threads only queue there and fight over the GIL here (measured: 4 beats 8).
DOMAIN_WORKERS = 4
HOST_WORKERS = 16
DEFAULT_TIMEOUT = 300.0  # seconds per host, connect included
_VANISHED = {libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT}

# Progress: called with (host uri, domains done, domains total) from worker threads.
Progress = Callable[[str, int, int], None]


def scan_hosts(
    uris: Iterable[str | None],
    progress: Progress | None = None,
    check_files: bool | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
) -> Iterator[tuple[int, HostScan]]:
    """Scan several hosts at once; yields (position in `uris`, scan) as each host finishes,
    or as its TIMEOUT seconds run out (None: no limit)."""
    uris = list(uris)

    def job(uri: str | None) -> Callable[[], HostScan]:
        return lambda: scan_host(uri, progress, check_files)

    for index, outcome in run_each([job(uri) for uri in uris], timeout, HOST_WORKERS):
        uri = uris[index] or "(default)"
        if isinstance(outcome, TimedOut):
            outcome = HostScan(Host(uri=uri, error=f"timed out after {outcome.seconds:g} s"))
        elif isinstance(outcome, Raised):
            outcome = HostScan(Host(uri=uri, error=host_error(outcome.exception)))
        yield index, outcome


def scan_host(
    uri: str | None, progress: Progress | None = None, check_files: bool | None = None
) -> HostScan:
    """Everything snapaudit needs from one host. Never raises for host-side problems: an
    unreachable host, or one whose scan failed in any way, comes back with `host.error` set.
    Files named in the metadata are inspected when `check_files` is true, or when it is None
    and the host is local."""
    try:
        conn = open_read_only(uri)
    except Exception as exc:  # libvirt-python raises SystemError too
        return HostScan(Host(uri=uri or "(default)", error=host_error(exc)))
    actual = uri or "(default)"
    try:
        actual = uri or _safe(conn.getURI) or "(default)"
        if check_files is None:
            check_files = files_visible(uri or _safe(conn.getURI))
        return _scan_connection(conn, actual, progress, check_files)
    except Exception as exc:  # one host's failure must not end the others
        return HostScan(Host(uri=actual, error=host_error(exc)))
    finally:
        _safe(conn.close)


def _scan_connection(
    conn: libvirt.virConnect, uri: str, progress: Progress | None, check_files: bool = False
) -> HostScan:
    try:
        host = Host(
            uri=uri,
            hostname=_safe(conn.getHostname),
            libvirt_version=_version(_safe(conn.getLibVersion)),
            hypervisor_version=_version(_safe(conn.getVersion)),
            driver=_safe(conn.getType),
            external_snapshot_revert=_external_snapshot_revert(_safe(conn.getCapabilities)),
        )
        listed = conn.listAllDomains(0)
    except libvirt.libvirtError as exc:
        return HostScan(Host(uri=uri, error=one_line(exc)))

    domains: list[Domain] = []
    skipped: list[Skipped] = []
    done = 0
    lock = threading.Lock()

    volumes = volume_resolver(conn)

    def collect(domain: libvirt.virDomain) -> None:
        nonlocal done
        found, missed = _scan_domain(domain, uri, check_files, volumes)
        with lock:
            domains.extend(found)
            skipped.extend(missed)
            done += 1
            if progress:
                progress(uri, done, len(listed))

    if progress:
        progress(uri, 0, len(listed))
    run_all(collect, listed, DOMAIN_WORKERS)
    domains.sort(key=lambda d: (d.name, d.uuid))
    skipped.sort(key=lambda s: (s.domain or "", s.snapshot or "", s.reason))
    files = gather_files(domains) if check_files else None
    return HostScan(host, tuple(domains), tuple(skipped), files)


def gather_files(domains: Iterable[Domain]) -> dict[str, FileFacts]:
    """Inspect every local file the domains and their snapshots name."""
    images, plain = set(), set()
    for domain in domains:
        images.update(s.path for s in domain.disk_sources() if s.type == "file" and s.path)
        plain.update(s.memory_file for s in domain.snapshots if s.memory_file)
    return files.gather(
        (p for p in images if p.startswith("/")), (p for p in plain if p.startswith("/"))
    )


def volume_resolver(conn: libvirt.virConnect) -> VolumeResolver:
    """Looks storage volumes up over CONN (read-only calls), each pool and each volume once
    per host: many disks and snapshots name the same few."""
    pools: dict[str, libvirt.virStoragePool | str] = {}
    found: dict[tuple[str, str], Volume] = {}
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


def _scan_domain(
    domain: libvirt.virDomain,
    uri: str,
    with_disks: bool = True,
    volumes: VolumeResolver | None = None,
) -> tuple[list[Domain], list[Skipped]]:
    """The domain and its snapshots. Its current disks (one more call) are read only when
    WITH_DISKS: only the file checks need them, and remote fleets pay per round trip."""
    name, uuid = domain.name(), domain.UUIDString()
    try:
        disks = parse_domain_disks(domain.XMLDesc(0), volumes) if with_disks else ()
        listed = domain.listAllSnapshots(0)
        current = _current_snapshot(domain) if listed else None
    except libvirt.libvirtError as exc:
        return [], [_skip(uri, name, None, exc)]
    except SnapshotXMLError as exc:
        return [], [Skipped(uri, name, None, f"domain definition: {exc}")]
    snapshots, skipped = [], []
    for snap in listed:
        snap_name = snap.getName()
        try:
            xml = snap.getXMLDesc(0)
            snapshots.append(
                parse_snapshot(
                    xml,
                    host=uri,
                    domain=name,
                    domain_uuid=uuid,
                    current=snap_name == current,
                    volumes=volumes,
                )
            )
        except libvirt.libvirtError as exc:
            skipped.append(_skip(uri, name, snap_name, exc))
        except SnapshotXMLError as exc:
            skipped.append(Skipped(uri, name, snap_name, str(exc)))
    snapshots.sort(key=_snapshot_order)
    parents = {s.parent for s in snapshots}
    snapshots = [
        dataclasses.replace(s, has_children=True) if s.name in parents else s for s in snapshots
    ]
    return [Domain(uri, name, uuid, disks, tuple(snapshots))], skipped


def _current_snapshot(domain: libvirt.virDomain) -> str | None:
    try:
        return domain.snapshotCurrent(0).getName()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT:
            return None  # the domain has snapshots but none is current
        raise


def _skip(uri: str, domain: str, snapshot: str | None, exc: libvirt.libvirtError) -> Skipped:
    vanished = exc.get_error_code() in _VANISHED
    what = "snapshot" if snapshot is not None else "domain"
    reason = f"{what} disappeared during the scan" if vanished else one_line(exc)
    return Skipped(uri, domain, snapshot, reason, vanished=vanished)


def _snapshot_order(s: Snapshot):
    return (s.created is None, s.created.timestamp() if s.created else 0, s.name)


def _external_snapshot_revert(capabilities: str | None) -> bool | None:
    if capabilities is None:
        return None
    try:
        caps = parse_xml(capabilities)
    except SnapshotXMLError:
        return None
    return caps.find("guest/features/externalSnapshot") is not None


def host_error(exc: BaseException) -> str:
    """The one line a host's scan failed with. libvirt-python raises SystemError when the
    message libvirt gave is not UTF-8 (a node file with a stray byte): show that message."""
    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, SystemError) and isinstance(cause, UnicodeDecodeError):
        text = bytes(cause.object).decode("utf-8", "backslashreplace").strip()
        return (text.splitlines() or ["libvirt error"])[0]
    return one_line(exc)


def _safe(call: Callable):
    try:
        return call()
    except libvirt.libvirtError:
        return None


def _version(number: int | None) -> str | None:
    if not number:
        return None
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"
