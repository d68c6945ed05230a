"""The audit lab on real QEMU: the embedded driver and a real libvirtd, serving the same VMs,
images and snapshot metadata, must give exactly the expected verdicts."""

from __future__ import annotations

import json
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from auditor.engine.audit import audit
from auditor.engine.registry import load_rules
from auditor.reports import render
from auditor.sources.live.scanner import scan_host
from testlab.daemon import LibvirtDaemon
from testlab.images import check_pattern
from testlab.lab import DOMAINS, EXPECTED
from testlab.pytest_fixtures import require_libvirtd
from tests.helpers import run_cli

pytestmark = pytest.mark.qemu
# Both scans judge ages against the same clock: the lab's snapshots are taken today.
NOW = datetime.fromtimestamp(int(time.time()), tz=UTC)


def expected(images: Path) -> list[tuple]:
    return [(*row[:3], row[3].format(images=images), row[4]) for row in EXPECTED]


def lab_only(report: dict) -> dict:
    """The lab's part of a report: the embedded root is shared with other tests' VMs."""
    for key in ("snapshots", "findings"):
        report[key] = [item for item in report[key] if item["domain"] in DOMAINS]
    return report


def rows(findings) -> list[tuple]:
    return [(f["rule"], f["severity"], f["domain"], f["snapshot"], f["disk"]) for f in findings]


@pytest.fixture(scope="module")
def embedded_report(audit_lab):
    conn, _ = audit_lab
    result = audit([scan_host(conn.getURI())], load_rules()[0], now=NOW)
    return lab_only(json.loads(render("json", result)))


@pytest.fixture(scope="module")
def daemon_report(audit_lab, tmp_path_factory):
    """The same lab served by a private libvirtd: its domain definitions and snapshot
    metadata copied from the embedded driver's root (the layout is libvirtd's own)."""
    require_libvirtd()
    conn, _ = audit_lab
    embed_root = Path(conn.getURI().split("root=", 1)[1])
    root = tmp_path_factory.mktemp("lab-libvirtd")
    shutil.copytree(embed_root / "etc" / "qemu", root / "etc" / "qemu")
    shutil.copytree(embed_root / "lib" / "qemu" / "snapshot", root / "lib" / "qemu" / "snapshot")
    with LibvirtDaemon(root) as daemon:
        proc = run_cli(
            "scan",
            "-c",
            daemon.ro_uri,
            "--format",
            "json",
            env={"SOURCE_DATE_EPOCH": str(int(NOW.timestamp()))},
        )
    assert proc.returncode == 1, proc.stderr
    return lab_only(json.loads(proc.stdout))


def test_embedded_driver_finds_exactly_the_expected(audit_lab, embedded_report):
    _, images = audit_lab
    assert embedded_report["hosts"][0]["files_checked"] is True
    assert embedded_report["skipped"] == [] and embedded_report["rule_errors"] == []
    assert rows(embedded_report["findings"]) == expected(images)


def test_libvirtd_over_read_only_socket_gives_the_same_verdicts(
    audit_lab, embedded_report, daemon_report
):
    _, images = audit_lab
    assert daemon_report["hosts"][0]["files_checked"] is True
    assert rows(daemon_report["findings"]) == expected(images)

    def verdicts(report):
        return [{k: v for k, v in f.items() if k != "host"} for f in report["findings"]]

    assert verdicts(daemon_report) == verdicts(embedded_report)
    assert [s["compliant"] for s in daemon_report["snapshots"]] == [
        s["compliant"] for s in embedded_report["snapshots"]
    ]


def test_sizes_and_chain_depths_are_reported(audit_lab, embedded_report):
    _, images = audit_lab
    snaps = {(s["domain"], s["name"]): s for s in embedded_report["snapshots"]}
    (disk,) = snaps[("offline-external", "clean")]["disks"]
    assert disk["source"] == f"{images}/offline-external.clean.vda.qcow2"
    assert disk["chain_depth"] == 2  # the overlay on the original image
    assert disk["overlay_size"] > 0 and disk["state_size"] >= 1024 * 1024  # 1 MiB pattern
    (internal,) = snaps[("offline-internal", "before-update")]["disks"]
    assert (internal["chain_depth"], internal["overlay_size"]) == (1, None)
    memspec = snaps[("live-memspec", "checkpoint")]
    assert memspec["memory_file"] == f"{images}/live-memspec.mem"
    assert memspec["memory_size"] > 0
    assert snaps[("damaged-memory", "checkpoint")]["memory_size"] is None


def test_lab_images_hold_their_patterns(audit_lab):
    _, images = audit_lab
    assert check_pattern(
        images / "offline-internal.qcow2", 0x11, 0, 1024 * 1024, snapshot="before-update"
    )
    assert check_pattern(images / "offline-external.qcow2", 0x13, 0, 1024 * 1024)
    assert not check_pattern(images / "offline-external.qcow2", 0x14, 0, 1024 * 1024)
