"""End to end against a real libvirtd, over a read-only connection, on snapshots that QEMU
really took: internal (shut off and live), external (shut off and --memspec), disk-only."""

from __future__ import annotations

import json

import libvirt
import pytest

from testlab.daemon import LibvirtDaemon
from testlab.images import create_qcow2
from testlab.pytest_fixtures import require_libvirtd
from testlab.vms import (
    define_vm,
    snapshot_disk_only,
    snapshot_external_live_memspec,
    snapshot_external_offline,
    snapshot_internal,
    snapshot_internal_live,
)
from tests.helpers import run_cli

pytestmark = pytest.mark.qemu


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """Six VMs, one snapshot each, taken through libvirt's read-write socket, on a libvirtd
    of this module's own (so that no other test's VMs show up)."""
    require_libvirtd()
    images = tmp_path_factory.mktemp("images")
    with LibvirtDaemon(tmp_path_factory.mktemp("libvirtd")) as daemon:
        conn = libvirt.open(daemon.uri)

        def vm(name, running=False, guest_agent=False):
            disk = create_qcow2(images / f"{name}.qcow2", "16M")
            return define_vm(conn, name, [disk], running=running, guest_agent=guest_agent)

        snapshot_internal(vm("offline-internal"), "before-update")
        snapshot_internal_live(vm("live-internal", running=True), "with-memory")
        snapshot_external_offline(vm("offline-external"), "clean", images)
        memspec = vm("live-memspec", running=True)
        snapshot_external_live_memspec(memspec, "checkpoint", images / "live-memspec.mem", images)
        snapshot_disk_only(vm("disk-only", running=True), "nightly", images)
        agent = vm("disk-only-agent", running=True, guest_agent=True)
        snapshot_disk_only(agent, "nightly", images)
        for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
            dom.destroy()
        conn.close()
        yield daemon


def test_read_only_socket_refuses_writes(host):
    conn = libvirt.openReadOnly(host.ro_uri)
    with pytest.raises(libvirt.libvirtError, match="read only access"):
        conn.defineXML("<domain type='kvm'><name>x</name></domain>")
    conn.close()


def test_scan_over_read_only_connection_finds_exactly_the_internal_and_unquiesced(host):
    proc = run_cli("scan", "-c", host.ro_uri, "--format", "json")
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    (scanned,) = report["hosts"]
    assert scanned["error"] is None
    assert scanned["libvirt_version"] == ".".join(
        str(libvirt.getVersion() // 10**k % 1000) for k in (6, 3, 0)
    )
    assert report["summary"] == {
        "hosts": 1,
        "domains": 6,
        "snapshots": 6,
        "compliant": 3,
        "noncompliant": 3,
        "findings": {"error": 4, "warning": 1, "info": 0},
    }
    assert [
        (f["domain"], f["snapshot"], f["rule"], f["severity"], f["disk"])
        for f in report["findings"]
    ] == [
        ("disk-only", "nightly", "SNAP004", "error", None),
        ("disk-only-agent", "nightly", "SNAP004", "warning", None),
        ("live-internal", "with-memory", "SNAP001", "error", None),
        ("live-internal", "with-memory", "SNAP002", "error", "vda"),
        ("offline-internal", "before-update", "SNAP002", "error", "vda"),
    ]
    modes = {
        (s["domain"], s["name"]): (s["state"], s["memory"], [d["snapshot"] for d in s["disks"]])
        for s in report["snapshots"]
    }
    assert modes == {
        ("disk-only", "nightly"): ("disk-snapshot", "no", ["external"]),
        ("disk-only-agent", "nightly"): ("disk-snapshot", "no", ["external"]),
        ("live-internal", "with-memory"): ("running", "internal", ["internal"]),
        ("live-memspec", "checkpoint"): ("running", "external", ["external"]),
        ("offline-external", "clean"): ("shutoff", "no", ["external"]),
        ("offline-internal", "before-update"): ("shutoff", "no", ["internal"]),
    }
