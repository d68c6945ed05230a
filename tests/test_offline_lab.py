"""Offline audits of the real lab: a copy of libvirt's metadata directory (with the domain
definitions) gives the same findings as the live scan of the host it came from."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from conftest import run_cli

from testlab.lab import DOMAINS

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
