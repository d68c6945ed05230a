"""The scanner against libvirt's test driver, including objects that vanish mid-scan.

libvirt cannot be told to delete an object between two calls of ours, so these tests wrap
real test-driver objects and make the real deletion happen at that moment; every error seen
by the scanner is libvirt's own.
"""

from __future__ import annotations

import libvirt

from auditor.sources.live.fleet import _each_host, scan_hosts
from auditor.sources.live.scanner import _scan_connection, scan_host
from tests.helpers import fixture_uri

SEED = fixture_uri("seed_examples.xml")


class DomainDeletingSnapshots:
    """A real domain whose snapshots are deleted right after they are listed."""

    def __init__(self, domain, delete=(), corrupt=()):
        self._domain, self._delete, self._corrupt = domain, delete, corrupt

    def __getattr__(self, name):
        return getattr(self._domain, name)

    def listAllSnapshots(self, flags=0):
        listed = self._domain.listAllSnapshots(flags)
        for snap in listed:
            if snap.getName() in self._delete:
                snap.delete(0)
        return [CorruptXML(s) if s.getName() in self._corrupt else s for s in listed]


class CorruptXML:
    """A real snapshot whose XML arrives truncated, as from a damaged metadata file."""

    def __init__(self, snap):
        self._snap = snap

    def __getattr__(self, name):
        return getattr(self._snap, name)

    def getXMLDesc(self, flags=0):
        return self._snap.getXMLDesc(flags)[:60]


class ConnectionWrapping:
    def __init__(self, conn, wrap):
        self._conn, self._wrap = conn, wrap

    def __getattr__(self, name):
        return getattr(self._conn, name)

    def listAllDomains(self, flags=0):
        return [self._wrap(d) for d in self._conn.listAllDomains(flags)]


def test_snapshot_deleted_after_listing_is_skipped_and_noted():
    conn = libvirt.open(SEED)
    wrapped = ConnectionWrapping(
        conn, lambda d: DomainDeletingSnapshots(d, delete={"sample-snapshot-name-2"})
    )
    scan, _ = _scan_connection(wrapped, SEED, None)
    assert [s.name for s in scan.snapshots] == ["sample-snapshot-name-1"]
    assert [(s.domain, s.snapshot, s.reason, s.vanished) for s in scan.skipped] == [
        ("vm-name", "sample-snapshot-name-2", "snapshot disappeared during the scan", True)
    ]


def test_domain_undefined_after_listing_is_skipped_and_noted():
    uri = fixture_uri("rules/SNAP004.xml")
    conn = libvirt.open(uri)

    def undefine_noagent(domain):
        if domain.name() == "noagent":  # test-driver domains run: undefine, then stop
            domain.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
            domain.destroy()
        return domain

    scan, _ = _scan_connection(ConnectionWrapping(conn, undefine_noagent), uri, None)
    assert [d.name for d in scan.domains] == ["withagent"]
    assert [(s.domain, s.name) for s in scan.snapshots] == [
        ("withagent", "warn-disk-only-with-agent")
    ]
    assert [(s.domain, s.snapshot, s.reason, s.vanished) for s in scan.skipped] == [
        ("noagent", None, "domain disappeared during the scan", True)
    ]


def test_unparseable_snapshot_xml_is_recorded_and_the_scan_goes_on():
    conn = libvirt.open(SEED)
    wrapped = ConnectionWrapping(
        conn, lambda d: DomainDeletingSnapshots(d, corrupt={"sample-snapshot-name-1"})
    )
    scan, _ = _scan_connection(wrapped, SEED, None)
    assert [s.name for s in scan.snapshots] == ["sample-snapshot-name-2"]
    ((domain, snapshot, reason, vanished),) = [
        (s.domain, s.snapshot, s.reason, s.vanished) for s in scan.skipped
    ]
    assert (domain, snapshot, vanished) == ("vm-name", "sample-snapshot-name-1", False)
    assert reason.startswith("invalid XML: ") and "\n" not in reason


def test_host_facts_current_snapshot_and_order():
    scan = scan_host(SEED)
    assert scan.host.uri == SEED
    assert scan.host.libvirt_version == ".".join(
        str(libvirt.getVersion() // 10**k % 1000) for k in (6, 3, 0)
    )
    assert [d.name for d in scan.domains] == ["vm-name"]
    assert [(s.name, s.current) for s in scan.snapshots] == [
        ("sample-snapshot-name-2", False),  # oldest first
        ("sample-snapshot-name-1", True),
    ]


def test_many_hosts_stream_back_with_their_positions():
    uris = [fixture_uri(f"rules/SNAP00{i}.xml") for i in range(1, 9)] + ["test:///missing.xml"]
    progress = []
    results = dict(scan_hosts(uris, lambda host, done, total: progress.append(host)))
    assert sorted(results) == list(range(9))
    assert [results[i].host.uri for i in range(9)] == uris
    assert results[8].host.error == "Failed to open file '/missing.xml': No such file or directory"
    assert set(progress) == set(uris[:8])


def test_calls_in_flight_are_sized_per_link_and_cut_back_for_a_fleet():
    def calls_of(uris, workers=None):
        job = lambda _index, _uri, calls: calls  # noqa: E731
        return sorted(dict(_each_host(uris, job, None, workers)).items())

    remote = [f"qemu+ssh://h{i}/system" for i in range(40)]
    assert calls_of(remote[:1]) == [(0, 64)]  # one host: enough calls to cover the round trip
    assert calls_of(["qemu:///system"]) == [(0, 4)]  # local: about the cores
    assert calls_of(remote[:20]) == [(i, 16) for i in range(20)]  # 320 threads in all
    assert calls_of(remote) == [(i, 10) for i in range(40)]  # 32 hosts at once
    assert calls_of(remote[:20], workers=8) == [(i, 8) for i in range(20)]
    assert calls_of(remote[:20], workers=100) == [(i, 16) for i in range(20)]
