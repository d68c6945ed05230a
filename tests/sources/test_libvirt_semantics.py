"""Verdicts that follow libvirt's own semantics, with the full findings compared to golden
files: default disk modes, disks named by path, memory files, storage volumes, paths that are
not regular files, and legacy metadata.

The fixtures under fixtures/semantics/ are test-driver node files (the host serves them as
libvirt would), plus offline snapshot XML for the shapes the test driver normalises or
refuses (libvirt rewrites `<memory file=...>` with snapshot='external' and rejects
`<state>nostate</state>`).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import libvirt
import pytest

from auditor.model import Domain, Host, HostScan
from auditor.sources.live.scanner import scan_host
from auditor.sources.live.volumes import volume_resolver
from auditor.sources.xml.disk_source import Volume
from auditor.sources.xml.parser import parse_snapshot
from testlab.pytest_fixtures import require
from tests.helpers import FIXTURES, fixture_uri
from tests.rules.golden import audit_scans, finding_rows

SEMANTICS = FIXTURES / "semantics"


@pytest.mark.parametrize("name", ["defaults", "volumes"])
def test_test_driver_host_matches_golden_findings(name, golden):
    scan = scan_host(fixture_uri(f"semantics/{name}.xml"))
    assert (scan.host.error, scan.skipped) == (None, ())
    golden(SEMANTICS / f"{name}.expected.json", finding_rows(audit_scans([scan], Path("none"))))


def test_listed_disk_without_mode_in_a_live_disk_only_snapshot_is_external():
    """The case first seen through the test driver: SNAP004 only, no SNAP002."""
    scan = scan_host(fixture_uri("semantics/defaults.xml"))
    rows = finding_rows(audit_scans([scan], Path("none")))
    assert [r["rule"] for r in rows if r["snapshot"] == "listed-default-disk-only"] == ["SNAP004"]


def _make_files(images: Path) -> None:
    require(shutil.which("qemu-img"), "qemu-img is not installed")
    for name, backing in (
        ("files01.qcow2", None),
        ("files01.now.qcow2", "files01.qcow2"),
        ("files01-data.qcow2", None),
        ("files01-data.now.qcow2", "files01-data.qcow2"),
    ):
        back = ["-b", str(images / backing), "-F", "qcow2"] if backing else []
        argv = ["qemu-img", "create", "-q", "-f", "qcow2", *back, str(images / name), "8M"]
        subprocess.run(argv, check=True, capture_output=True)
    (images / "files01.all-files.mem").write_bytes(b"\0" * 4096)
    os.mkfifo(images / "files01.mem.fifo")
    os.mkfifo(images / "files01.overlay.fifo")
    # A block device node of a major number reserved for local use: stat says "block",
    # and opening it reaches no device.
    try:
        os.mknod(images / "sdb", stat.S_IFBLK | 0o600, os.makedev(240, 0))
    except PermissionError:
        require(False, "creating a block device node needs CAP_MKNOD")


def test_file_checks_find_paths_that_are_not_regular_files(golden, tmp_path):
    _make_files(tmp_path)
    node = tmp_path / "files.xml"
    node.write_text((SEMANTICS / "files.xml").read_text().replace("@IMAGES@", str(tmp_path)))
    scan = scan_host(f"test://{node}", check_files=True)
    assert (scan.host.error, scan.skipped) == (None, ())
    assert scan.files[str(tmp_path / "sdb")].file_type == "block"
    assert scan.files[str(tmp_path / "files01.mem.fifo")].file_type == "fifo"
    assert scan.files[str(tmp_path / "files01.overlay.fifo")].file_type == "fifo"
    assert scan.files["/dev/null"].file_type == "char"
    assert scan.files[str(tmp_path / "files01.now.qcow2")].file_type == "file"
    # The file volume's target path is what the file checks read.
    assert scan.files[str(tmp_path / "files01-data.qcow2")].format == "qcow2"
    rows = finding_rows(audit_scans([scan], Path("none")), tmp_path)
    golden(SEMANTICS / "files.expected.json", rows)


def _offline_scan() -> HostScan:
    snapshots = tuple(
        parse_snapshot(
            path.read_text(),
            host="offline",
            domain="vm",
            domain_uuid="00000000-0000-4000-8000-000000001004",
            current=False,
        )
        for path in sorted((SEMANTICS / "offline").glob("*.xml"))
    )
    domain = Domain(
        host="offline",
        name="vm",
        uuid="00000000-0000-4000-8000-000000001004",
        disks=(),
        snapshots=tuple(sorted(snapshots, key=lambda s: s.created)),
    )
    return HostScan(Host("offline"), (domain,))


def test_offline_and_legacy_shapes_match_golden_findings(golden):
    rows = finding_rows(audit_scans([_offline_scan()], Path("none")))
    golden(SEMANTICS / "offline.expected.json", rows)


def test_volume_lookups_are_cached_per_host():
    conn = libvirt.openReadOnly(fixture_uri("semantics/volumes.xml"))
    try:
        calls = []

        class Counting:
            """The real connection, with its pool lookups counted."""

            def storagePoolLookupByName(self, name):
                calls.append(name)
                return conn.storagePoolLookupByName(name)

        resolve = volume_resolver(Counting())
        first = resolve("images", "vol01.qcow2")
        assert first == Volume("file", "/var/lib/libvirt/images/vol01.qcow2")
        assert resolve("images", "vol01.qcow2") is first
        assert resolve("vg0", "vol01-data") == Volume("block", "/dev/vg0/vol01-data")
        assert resolve("images", "vol01-data.qcow2").type == "file"
        missing = "pool gone: Storage pool not found: no storage pool with matching name 'gone'"
        assert resolve("gone", "x") == Volume(None, None, missing)
        assert resolve("gone", "y").error == resolve("gone", "x").error
        assert calls == ["images", "vg0", "gone"]
    finally:
        conn.close()
