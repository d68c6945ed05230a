"""Reads one libvirt host, read-only, into the model (fleet.py reads many at once).

One read-only connection; the host's own calls (capabilities, hostname, versions, driver,
domain list) at once, then per domain one listAllSnapshots() and one snapshotCurrent() (plus
the domain's own XMLDesc() when files are checked or a bundle is collected), then one
getXMLDesc() per snapshot; for disks of type='volume', one lookup per storage pool and per
volume, cached for the host (volumes.py). Every call is a round trip to the daemon, and
libvirt's RPC client multiplexes calls from many threads over one connection (libvirt-python
releases the GIL while it waits), so the calls are spread over a pool of workers sized for
the link: a few for a local socket (the cores parse; more threads only fight over the GIL),
many for a remote host (enough calls in flight to cover the round trip). Once the domains are
read, the files they name are checked (files/checks.py) in this thread. Any exception while
reading the host becomes the host's error: scan_host never raises for the host's problems."""

from __future__ import annotations

import threading
from collections.abc import Callable
from urllib.parse import urlsplit

import libvirt

from auditor.display import one_line
from auditor.model import Domain, Host, HostScan, Skipped, Snapshot
from auditor.sources.files.checks import files_visible, gather_files
from auditor.sources.live.connection import open_read_only
from auditor.sources.live.deadline import run_all
from auditor.sources.live.volumes import volume_resolver
from auditor.sources.xml.assemble import (
    RawDomain,
    RawHost,
    RawSnapshot,
    external_snapshot_revert,
    finish_domain,
)
from auditor.sources.xml.disk_source import VolumeResolver
from auditor.sources.xml.parser import SnapshotXMLError, parse_domain_disks, parse_snapshot

# Calls in flight per host. Local: the daemon answers in microseconds and the parsing here
# is the work, so about the cores (measured on 2 cores: 4 beats 8). Remote: a round trip
# costs milliseconds, so enough calls to fill it (measured at 20 ms RTT: 64 threads read
# 2,000 snapshots 25x faster than one, and 2.4x faster than 16).
LOCAL_WORKERS = 4
REMOTE_WORKERS = 64
_REMOTE_TRANSPORTS = {"tcp", "tls", "ssh", "libssh", "libssh2", "ext"}
DEFAULT_TIMEOUT = 300.0  # seconds per host, connect included
_VANISHED = {libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT}

# Progress: called with (host uri, domains done, domains total) from worker threads.
Progress = Callable[[str, int, int], None]
# Called with each domain as soon as it is read, from worker threads, on hosts whose files
# are not checked: the audit runs while the daemon answers the calls for the other domains.
# (With file checks, rules need the whole host's files, gathered once every domain is read.)
DomainDone = Callable[[Domain], None]


def workers_for(uri: str | None) -> int:
    """Calls in flight for a host: many over a network link, a few on a local socket."""
    if not uri:
        return LOCAL_WORKERS
    parts = urlsplit(uri)
    remote = parts.scheme.partition("+")[2] in _REMOTE_TRANSPORTS or bool(parts.hostname)
    return REMOTE_WORKERS if remote else LOCAL_WORKERS


def scan_host(
    uri: str | None,
    progress: Progress | None = None,
    check_files: bool | None = None,
    workers: int | None = None,
    on_domain: DomainDone | None = None,
) -> HostScan:
    """Everything snapaudit needs from one host. Never raises for host-side problems: an
    unreachable host, or one whose scan failed in any way, comes back with `host.error` set.
    Files named in the metadata are inspected when `check_files` is true, or when it is None
    and the host is local."""
    return _read_host(uri, progress, check_files, workers, on_domain, keep_raw=False)[0]


def collect_host(
    uri: str | None, check_files: bool | None = None, workers: int | None = None
) -> tuple[HostScan, RawHost | None]:
    """What `scan_host` reads, and the XML it was read from (for a bundle): domain
    definitions are always read. The RawHost is None when the host could not be read."""
    return _read_host(uri, None, check_files, workers, None, keep_raw=True)


def _read_host(
    uri: str | None,
    progress: Progress | None,
    check_files: bool | None,
    workers: int | None,
    on_domain: DomainDone | None,
    *,
    keep_raw: bool,
) -> tuple[HostScan, RawHost | None]:
    try:
        conn = open_read_only(uri)
    except Exception as exc:  # libvirt-python raises SystemError too
        return HostScan(Host(uri=uri or "(default)", error=host_error(exc))), None
    actual = uri or "(default)"
    try:
        actual = uri or _safe(conn.getURI) or "(default)"
        if check_files is None:
            check_files = files_visible(uri or _safe(conn.getURI))
        calls = workers or workers_for(uri)
        return _scan_connection(
            conn, actual, progress, check_files, calls, keep_raw=keep_raw, on_domain=on_domain
        )
    except Exception as exc:  # one host's failure must not end the others
        return HostScan(Host(uri=actual, error=host_error(exc))), None
    finally:
        _safe(conn.close)


def _scan_connection(
    conn: libvirt.virConnect,
    uri: str,
    progress: Progress | None,
    check_files: bool = False,
    workers: int = LOCAL_WORKERS,
    keep_raw: bool = False,
    on_domain: DomainDone | None = None,
) -> tuple[HostScan, RawHost | None]:
    # The host's own calls all at once: over a network link each one is a round trip.
    calls: tuple[Callable[[], object], ...]
    calls = (conn.getCapabilities, conn.getHostname, conn.getLibVersion, conn.getVersion)
    calls += (conn.getType, lambda: conn.listAllDomains(0))
    answers: list = [None] * len(calls)

    def ask(index: int) -> None:
        # Only the domain list is needed: without the rest, the host is still audited.
        try:
            answers[index] = calls[index]() if index == len(calls) - 1 else _safe(calls[index])
        except Exception as exc:  # raised below, the first in the calls' order
            answers[index] = exc

    run_all(ask, range(len(calls)), min(len(calls), workers))
    failed = next((a for a in answers if isinstance(a, Exception)), None)
    if isinstance(failed, libvirt.libvirtError):
        return HostScan(Host(uri=uri, error=one_line(failed))), None
    if failed is not None:
        raise failed
    capabilities, hostname, libvirt_version, hypervisor_version, driver, listed = answers
    host = Host(
        uri=uri,
        hostname=hostname,
        libvirt_version=_version(libvirt_version),
        hypervisor_version=_version(hypervisor_version),
        driver=driver,
        external_snapshot_revert=external_snapshot_revert(capabilities),
    )

    # Two rounds over the same workers: each domain's calls, then every snapshot's XML, so
    # that a host with one big domain keeps as many calls in flight as one with many.
    heads: list[_Head | Skipped | None] = [None] * len(listed)
    done = 0
    lock = threading.Lock()

    found_volumes: dict = {}
    volumes = volume_resolver(conn, found_volumes)
    on_domain = None if check_files else on_domain

    def finished(owner: _Head | Skipped) -> None:
        nonlocal done
        if isinstance(owner, _Head):  # read to the end: built, and audited now
            owner.built = owner.domain(uri)
            if on_domain:
                on_domain(owner.built)
        with lock:
            done += 1
            if progress:
                progress(uri, done, len(listed))

    def head(index: int) -> None:
        heads[index] = found = _domain_head(
            listed[index], uri, check_files or keep_raw, volumes, keep_raw
        )
        if isinstance(found, Skipped) or not found.listed:
            finished(found)

    if progress:
        progress(uri, 0, len(listed))
    run_all(head, range(len(listed)), workers)
    reads = [(h, i) for h in heads if isinstance(h, _Head) for i in range(len(h.listed))]

    def read(item: tuple[_Head, int]) -> None:
        owner, index = item
        owner.read(index, uri)
        with lock:
            owner.remaining -= 1
            last = owner.remaining == 0
        if last:
            finished(owner)

    run_all(read, reads, workers)
    domains: list[Domain] = []
    skipped: list[Skipped] = []
    for found in heads:
        if isinstance(found, Skipped):
            skipped.append(found)
        elif found is not None:
            domains.append(found.built or found.domain(uri))
            skipped.extend(x for x in found.results if isinstance(x, Skipped))
    domains.sort(key=lambda d: (d.name, d.uuid))
    skipped.sort(key=lambda s: (s.domain or "", s.snapshot or "", s.reason))
    files = gather_files(domains) if check_files else None
    raw = None
    if keep_raw:
        raws = tuple(h.raw() for h in heads if isinstance(h, _Head))
        raw = RawHost(host, capabilities, raws, tuple(skipped), found_volumes)
    return HostScan(host, tuple(domains), tuple(skipped), files), raw


class _Head:
    """A domain whose own calls are answered; its snapshots' XML is read one by one."""

    def __init__(self, name, uuid, disks, listed, current, volumes, definition=None) -> None:
        self.name, self.uuid, self.disks, self.listed = name, uuid, disks, listed
        self.current, self.volumes = current, volumes
        self.results: list[Snapshot | Skipped | None] = [None] * len(listed)
        self.remaining = len(listed)
        self.built: Domain | None = None  # once every snapshot is read
        # Kept for a bundle only (definition not None): the XML as libvirt returned it.
        self.definition = definition
        self.xml: list[RawSnapshot | None] = [None] * len(listed)

    def read(self, index: int, uri: str) -> None:
        snap = self.listed[index]
        snap_name = snap.getName()
        try:
            xml = snap.getXMLDesc(0)
            if self.definition is not None:
                self.xml[index] = RawSnapshot(snap_name, xml, snap_name == self.current)
            self.results[index] = parse_snapshot(
                xml,
                host=uri,
                domain=self.name,
                domain_uuid=self.uuid,
                current=snap_name == self.current,
                volumes=self.volumes,
            )
        except libvirt.libvirtError as exc:
            self.results[index] = _skip(uri, self.name, snap_name, exc)
        except SnapshotXMLError as exc:
            self.results[index] = Skipped(uri, self.name, snap_name, str(exc))

    def raw(self) -> RawDomain:
        snapshots = tuple(x for x in self.xml if x is not None)
        return RawDomain(self.name, self.uuid, self.definition, snapshots)

    def domain(self, uri: str) -> Domain:
        snapshots = (s for s in self.results if isinstance(s, Snapshot))
        return finish_domain(uri, self.name, self.uuid, self.disks, snapshots)


def _domain_head(
    domain: libvirt.virDomain,
    uri: str,
    with_disks: bool,
    volumes: VolumeResolver,
    keep_raw: bool = False,
) -> _Head | Skipped:
    """The domain's own calls. Its current disks (one more call) are read only when
    WITH_DISKS: only the file checks and bundles need them, and remote fleets pay per round
    trip. The definition is fetched without secrets (no VIR_DOMAIN_XML_SECURE)."""
    name, uuid = domain.name(), domain.UUIDString()
    definition = None
    try:
        definition = domain.XMLDesc(0) if with_disks else None
        disks = parse_domain_disks(definition, volumes) if definition is not None else ()
        listed = domain.listAllSnapshots(0)
        current = _current_snapshot(domain) if listed else None
    except libvirt.libvirtError as exc:
        return _skip(uri, name, None, exc)
    except SnapshotXMLError as exc:
        return Skipped(uri, name, None, f"domain definition: {exc}")
    return _Head(name, uuid, disks, listed, current, volumes, definition if keep_raw else None)


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
