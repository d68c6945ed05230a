"""Reads snapshots off libvirt hosts, read-only, into the model.

One read-only connection per host; getCapabilities() and listAllDomains(), then per domain
one listAllSnapshots(), one snapshotCurrent() and one getXMLDesc() per snapshot (plus the
domain's own XMLDesc() when files are checked). Domains are
fetched by a small thread pool because each call is a round trip to the daemon (libvirt
connections are thread-safe and libvirt-python releases the GIL while it waits). Hosts are
scanned concurrently too, and results are yielded as each host finishes.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed

import libvirt

from auditor.errors import one_line
from auditor.model import Domain, FileFacts, Host, HostScan, Skipped, Snapshot
from auditor.sources import files
from auditor.sources.files import files_visible
from auditor.sources.parser import SnapshotXMLError, parse_domain_disks, parse_snapshot, parse_xml

# libvirtd serves at most 5 calls at once per client (max_client_requests); beyond about
# that, more threads only queue there and fight over the GIL here (measured: 4 beats 8).
DOMAIN_WORKERS = 4
HOST_WORKERS = 16
_VANISHED = {libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT}

# Progress: called with (host uri, domains done, domains total) from worker threads.
Progress = Callable[[str, int, int], None]


def scan_hosts(
    uris: Iterable[str | None],
    progress: Progress | None = None,
    check_files: bool | None = None,
) -> Iterator[tuple[int, HostScan]]:
    """Scan several hosts at once; yields (position in `uris`, scan) as each host finishes."""
    uris = list(uris)
    if not uris:
        return
    with ThreadPoolExecutor(max_workers=min(HOST_WORKERS, len(uris))) as pool:
        futures = {
            pool.submit(scan_host, uri, progress, check_files): i for i, uri in enumerate(uris)
        }
        for future in as_completed(futures):
            yield futures[future], future.result()


def scan_host(
    uri: str | None, progress: Progress | None = None, check_files: bool | None = None
) -> HostScan:
    """Everything snapaudit needs from one host. Never raises for host-side problems: an
    unreachable host comes back with `host.error` set. Files named in the metadata are
    inspected when `check_files` is true, or when it is None and the host is local."""
    try:
        conn = libvirt.openReadOnly(uri)
    except libvirt.libvirtError as exc:
        return HostScan(Host(uri=uri or "(default)", error=one_line(exc)))
    try:
        actual = uri or _safe(conn.getURI) or "(default)"
        if check_files is None:
            check_files = files_visible(uri or _safe(conn.getURI))
        return _scan_connection(conn, actual, progress, check_files)
    finally:
        conn.close()


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

    def collect(domain: libvirt.virDomain) -> None:
        nonlocal done
        found, missed = _scan_domain(domain, uri, check_files)
        with lock:
            domains.extend(found)
            skipped.extend(missed)
            done += 1
            if progress:
                progress(uri, done, len(listed))

    if progress:
        progress(uri, 0, len(listed))
    with ThreadPoolExecutor(max_workers=DOMAIN_WORKERS) as pool:
        for future in [pool.submit(collect, d) for d in listed]:
            future.result()
    domains.sort(key=lambda d: (d.name, d.uuid))
    skipped.sort(key=lambda s: (s.domain or "", s.snapshot or "", s.reason))
    files = gather_files(domains) if check_files else None
    return HostScan(host, tuple(domains), tuple(skipped), files)


def gather_files(domains: Iterable[Domain]) -> dict[str, FileFacts]:
    """Inspect every local file the domains and their snapshots name, and the images beside
    them that none names."""
    domains = list(domains)
    images, plain = set(), set()
    for domain in domains:
        images.update(s.path for s in domain.disk_sources() if s.type == "file" and s.path)
        plain.update(s.memory_file for s in domain.snapshots if s.memory_file)
    found = files.gather(
        (p for p in images if p.startswith("/")), (p for p in plain if p.startswith("/"))
    )
    # The directories of every image, scanned once each for images nothing names (SNAP018).
    named = set(images)
    for path in images:
        if path in found:
            named.update(found[path].backing_chain)
    directories = {os.path.dirname(p) for p in named if p.startswith("/")}
    referenced = set(found) | named
    referenced.update(p for f in found.values() for p in f.backing_chain)
    # libvirt names the overlays it made reverting to a snapshot with children, too.
    referenced.update(p for d in domains for s in d.snapshots for p in s.revert_overlays)
    found.update(files.unreferenced_images(directories, referenced))
    return found


def _scan_domain(
    domain: libvirt.virDomain, uri: str, with_disks: bool = True
) -> tuple[list[Domain], list[Skipped]]:
    """The domain and its snapshots. Its current disks (one more call) are read only when
    WITH_DISKS: only the file checks need them, and remote fleets pay per round trip."""
    name, uuid = domain.name(), domain.UUIDString()
    try:
        disks = parse_domain_disks(domain.XMLDesc(0)) if with_disks else ()
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
                    xml, host=uri, domain=name, domain_uuid=uuid, current=snap_name == current
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


def _safe(call: Callable):
    try:
        return call()
    except libvirt.libvirtError:
        return None


def _version(number: int | None) -> str | None:
    if not number:
        return None
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"
