"""The commands on libvirt's embedded QEMU driver (qemu:///embed?root=DIR): real QEMU, no
daemon, the driver running inside snapaudit's own process on its event loop.

A process can open one embedded root in its life, and a root can be open in one process at a
time: the root is built by a process of its own, then each command opens it in turn."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from testlab.embed import host_run_removed_afterwards
from testlab.pytest_fixtures import require, require_qemu_tools
from tests.helpers import REPO, run_cli

pytestmark = pytest.mark.qemu

# A shut-off domain with one qcow2 disk and one internal snapshot, made by libvirt itself.
BUILD = """\
import sys
from pathlib import Path

from testlab.embed import close_embedded, open_embedded
from testlab.images import create_qcow2
from testlab.vms import define_vm, snapshot_internal

root, images = Path(sys.argv[1]), Path(sys.argv[2])
images.mkdir()
conn = open_embedded(root)
dom = define_vm(conn, "vm1", [create_qcow2(images / "vm1.qcow2", "8M")])
snapshot_internal(dom, "before-upgrade")
close_embedded(conn)
"""

INTERNAL_DISK = (
    "SNAP002",
    "error",
    "vm1",
    "before-upgrade",
    "vda",
    "disk vda is captured inside its own image (internal snapshot)",
)


@pytest.fixture(scope="module")
def embedded_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URI of an embedded root holding domain vm1 and its internal snapshot."""
    require_qemu_tools()
    require(os.geteuid() == 0, "the embedded driver runs QEMU as root here")
    base = tmp_path_factory.mktemp("embedded-cli")
    with host_run_removed_afterwards():
        proc = subprocess.run(
            [sys.executable, "-c", BUILD, str(base / "root"), str(base / "images")],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr
        yield f"qemu:///embed?root={base / 'root'}"


def findings(report: dict) -> list[tuple]:
    return [
        (f["rule"], f["severity"], f["domain"], f["snapshot"], f["disk"], f["message"])
        for f in report["findings"]
    ]


def test_scan_reads_an_embedded_root(embedded_root: str):
    proc = run_cli("scan", "-c", embedded_root, "-f", "json")
    assert (proc.returncode, proc.stderr) == (1, "")
    report = json.loads(proc.stdout)
    assert [(h["uri"], h["error"]) for h in report["hosts"]] == [(embedded_root, None)]
    assert findings(report) == [INTERNAL_DISK]


def test_collect_reads_an_embedded_root(embedded_root: str, tmp_path: Path):
    bundle = tmp_path / "embedded.snapaudit.tar.gz"
    proc = run_cli("collect", "-c", embedded_root, "-o", str(bundle))
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout == f"{bundle}: {embedded_root}, 1 domains, 1 snapshots\n"
    scan = run_cli("scan", "--from", str(bundle), "-f", "json")
    assert scan.returncode == 1, scan.stderr
    assert findings(json.loads(scan.stdout)) == [INTERNAL_DISK]


def test_fix_plans_on_an_embedded_root(embedded_root: str):
    proc = run_cli("fix", "-c", embedded_root, "-f", "json")
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stdout
    plan = json.loads(proc.stdout)
    assert [(d["domain"], d["status"]) for d in plan["domains"]] == [("vm1", "ready")]


def test_fix_names_a_domain_the_host_does_not_have(embedded_root: str):
    proc = run_cli("fix", "-c", embedded_root, "--domain", "vm1", "--domain", "nosuch")
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        2,
        "",
        f"snapaudit: --domain 'nosuch': no such domain on {embedded_root}\n",
    )
