"""Offline audits of the real lab: a copy of libvirt's metadata directory (with the domain
definitions) gives the same findings as the live scan of the host it came from."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from testlab.lab import DOMAINS
from tests.helpers import run_cli

pytestmark = pytest.mark.qemu
CLOCK = str(int(time.time()))


def findings(report: dict) -> list[dict]:
    """The lab's findings, without the host's identity (the one thing that differs)."""
    return [
        {k: v for k, v in f.items() if k not in ("host", "fingerprint")}
        for f in report["findings"]
        if f["domain"] in DOMAINS
    ]


def scan(*args: str) -> dict:
    proc = run_cli(
        "scan", *args, "-f", "json", "--fail-on", "never", env={"SOURCE_DATE_EPOCH": CLOCK}
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def lab_root(audit_lab) -> Path:
    conn, _ = audit_lab
    return Path(conn.getURI().split("root=", 1)[1])


def test_a_copy_of_the_metadata_directory_gives_the_live_findings(audit_lab, lab_root, tmp_path):
    conn, _ = audit_lab
    # The live scan goes through the embedded root's own connection; the CLI cannot open a
    # second embedded driver on the same root, so the live side is rendered in-process.
    from auditor.engine.registry import load_rules
    from auditor.pipeline import audit_hosts
    from auditor.reports import render

    live = json.loads(
        render("json", audit_hosts([conn.getURI()], load_rules()[0], check_files=False))
    )
    copy = tmp_path / "snapshot"
    shutil.copytree(lab_root / "lib" / "qemu" / "snapshot", copy)
    shutil.copytree(lab_root / "etc" / "qemu", tmp_path / "qemu")
    offline = scan(
        "--from", str(copy), "--domain-xml", str(tmp_path / "qemu"), "--host-name", "lab"
    )
    assert offline["hosts"][0]["uri"] == "lab"
    assert offline["skipped"] == [] and offline["rule_errors"] == []
    assert findings(offline) == findings(live)
    assert len(findings(live)) > 10


def same_apart_from_identity(offline: dict, live: dict) -> None:
    """Every finding and every snapshot's facts equal; a bundle even keeps the host's
    identity, so the fingerprints match too."""
    assert offline["skipped"] == live["skipped"] == []
    assert offline["rule_errors"] == live["rule_errors"] == []
    assert offline["findings"] == live["findings"]
    assert offline["snapshots"] == live["snapshots"]
    assert len(findings(live)) > 10


def test_a_bundle_of_the_embedded_driver_gives_the_findings_of_the_scan_that_collected_it(
    audit_lab, tmp_path
):
    conn, _ = audit_lab
    from auditor.engine.audit import audit
    from auditor.engine.registry import load_rules
    from auditor.pipeline import report_time
    from auditor.reports import render
    from auditor.sources.live.scanner import collect_host
    from auditor.sources.offline.bundle import write_bundle

    # In-process: the CLI cannot open a second embedded driver on the same root.
    scanned, raw = collect_host(conn.getURI())
    assert scanned.files  # a local connection: file checks ran, and the bundle keeps them
    bundle = tmp_path / "embedded.snapaudit.tar.gz"
    with bundle.open("wb") as out:
        write_bundle(out, raw, scanned.files)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SOURCE_DATE_EPOCH", CLOCK)
        live = json.loads(render("json", audit([scanned], load_rules()[0], now=report_time())))
    offline = scan("--from", str(bundle))
    assert offline["hosts"] == live["hosts"]
    same_apart_from_identity(offline, live)


@pytest.fixture(scope="module")
def lab_daemon(audit_lab, lab_root, tmp_path_factory):
    """The lab served by a private libvirtd from a copy of the embedded root's metadata."""
    from testlab.daemon import LibvirtDaemon
    from testlab.pytest_fixtures import require_libvirtd

    require_libvirtd()
    root = tmp_path_factory.mktemp("offline-libvirtd")
    shutil.copytree(lab_root / "etc" / "qemu", root / "etc" / "qemu")
    shutil.copytree(lab_root / "lib" / "qemu" / "snapshot", root / "lib" / "qemu" / "snapshot")
    with LibvirtDaemon(root) as daemon:
        yield daemon


def test_collect_then_scan_from_the_bundle_gives_the_live_libvirtd_findings(lab_daemon, tmp_path):
    bundle = tmp_path / "hv.snapaudit.tar.gz"
    proc = run_cli("collect", "-c", lab_daemon.ro_uri, "-o", str(bundle))
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
    live = scan("-c", lab_daemon.ro_uri)
    assert live["hosts"][0]["files_checked"] is True
    offline = scan("--from", str(bundle))
    assert offline["hosts"] == live["hosts"]
    same_apart_from_identity(offline, live)


def test_a_copy_of_libvirtds_metadata_directory_gives_its_live_findings(lab_daemon, tmp_path):
    live = scan("-c", lab_daemon.ro_uri, "--no-check-files")
    copy = tmp_path / "snapshot"
    shutil.copytree(lab_daemon.root / "lib" / "qemu" / "snapshot", copy)
    shutil.copytree(lab_daemon.root / "etc" / "qemu", tmp_path / "qemu", ignore=_not_domains)
    offline = scan("--from", str(copy), "--domain-xml", str(tmp_path / "qemu"))
    assert offline["hosts"][0]["uri"] == str(copy)
    assert offline["skipped"] == [] and offline["rule_errors"] == []
    assert findings(offline) == findings(live)
    assert len(findings(live)) > 10


def _not_domains(directory: str, names: list[str]) -> list[str]:
    """libvirtd keeps networks, storage and autostart links beside the domain definitions."""
    return [n for n in names if not n.endswith(".xml")]
