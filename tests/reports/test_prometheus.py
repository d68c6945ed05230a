"""Prometheus text exposition for node_exporter's textfile collector, written atomically."""

from __future__ import annotations

import os
import re
import stat

from auditor.reports import render
from tests.helpers import CLOCK, fixture_uri, run_cli
from tests.sample_results import HOSTILE, ODD, sample_result

SEED = fixture_uri("seed_examples.xml")

EXPECTED = """\
# HELP snapaudit_findings Findings of the last audit. suppressed="true": waived or in the baseline, so not failing the gate.
# TYPE snapaudit_findings gauge
snapaudit_findings{host="qemu+ssh://root@hv1/system",domain="web",rule="SNAP001",severity="error",suppressed="true"} 1
snapaudit_findings{host="qemu+ssh://root@hv1/system",domain="web",rule="SNAP002",severity="error",suppressed="false"} 1
snapaudit_findings{host="qemu+ssh://root@hv1/system",domain="web",rule="SNAP006",severity="warning",suppressed="true"} 1
snapaudit_findings{host="qemu+ssh://root@hv1/system",domain="web",rule="SNAP011",severity="error",suppressed="false"} 1
snapaudit_findings{host="qemu+ssh://root@hv1/system",domain="web",rule="ACME001",severity="warning",suppressed="false"} 1
snapaudit_findings{host="qemu+ssh://root@hv1/system",domain="",rule="HOST001",severity="warning",suppressed="false"} 1
# HELP snapaudit_snapshots Snapshots per domain.
# TYPE snapaudit_snapshots gauge
snapaudit_snapshots{host="qemu+ssh://root@hv1/system",domain="web"} 3
snapaudit_snapshots{host="qemu+ssh://root@hv1/system",domain="db"} 0
# HELP snapaudit_snapshot_age_seconds Age of each snapshot when the audit ran.
# TYPE snapaudit_snapshot_age_seconds gauge
snapaudit_snapshot_age_seconds{host="qemu+ssh://root@hv1/system",domain="web",snapshot="nightly 1"} 403200
snapaudit_snapshot_age_seconds{host="qemu+ssh://root@hv1/system",domain="web",snapshot="<img src=x onerror=alert(1)>"} 1999800
snapaudit_snapshot_age_seconds{host="qemu+ssh://root@hv1/system",domain="web",snapshot="odd \\"name\\" \\\\ with\\nnewline\x1b\x00"} 3600
# HELP snapaudit_scan_duration_seconds How long the last audit took.
# TYPE snapaudit_scan_duration_seconds gauge
snapaudit_scan_duration_seconds 12.5
# HELP snapaudit_scan_success 1 when the host was scanned and everything on it audited, else 0.
# TYPE snapaudit_scan_success gauge
snapaudit_scan_success{host="qemu+ssh://root@hv1/system"} 0
snapaudit_scan_success{host="qemu:///system"} 0
# HELP snapaudit_last_run_timestamp_seconds When the last audit ran, in seconds since the epoch.
# TYPE snapaudit_last_run_timestamp_seconds gauge
snapaudit_last_run_timestamp_seconds 1764000000
"""  # noqa: E501


def test_exposition_is_exact():
    # hv1 is scanned but a snapshot was skipped and a rule raised there: not a success.
    assert render("prometheus", sample_result()) == EXPECTED


def test_label_values_read_back_unchanged():
    lines = render("prometheus", sample_result()).split("\n")
    ages = [line for line in lines if line.startswith("snapaudit_snapshot_age_seconds{")]
    assert len(ages) == 3  # the line feed in a name did not split its series
    # Read the label back as Prometheus does: only \\, \" and \n are escapes.
    values = [re.search(r'snapshot="((?:[^"\\]|\\.)*)"', line)[1] for line in ages]
    unescape = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}
    names = [re.sub(r"\\.", lambda m: unescape[m[0]], value) for value in values]
    assert names == ["nightly 1", HOSTILE, ODD]


def test_scan_writes_metrics_atomically(tmp_path):
    target = tmp_path / "snapaudit.prom"
    target.write_text("old metrics\n")
    reader = target.open()  # a collector in the middle of reading the old file
    proc = run_cli(
        "scan",
        "-c",
        SEED,
        "-c",
        fixture_uri("clean_host.xml"),
        "-f",
        "prometheus",
        "-o",
        str(target),
    )
    assert proc.returncode == 1, proc.stderr
    # The old file was replaced whole, never rewritten in place: its reader still sees it all.
    assert reader.read() == "old metrics\n"
    reader.close()
    assert os.listdir(tmp_path) == ["snapaudit.prom"]  # no temporary file left behind
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # node_exporter runs as its own user
    clean = fixture_uri("clean_host.xml")
    assert target.read_text() == (
        '# HELP snapaudit_findings Findings of the last audit. suppressed="true": waived or in'
        " the baseline, so not failing the gate.\n"
        "# TYPE snapaudit_findings gauge\n"
        f'snapaudit_findings{{host="{SEED}",domain="vm-name",rule="SNAP001",severity="error",'
        'suppressed="false"} 1\n'
        f'snapaudit_findings{{host="{SEED}",domain="vm-name",rule="SNAP002",severity="error",'
        'suppressed="false"} 1\n'
        f'snapaudit_findings{{host="{SEED}",domain="vm-name",rule="SNAP013",severity="warning",'
        'suppressed="false"} 1\n'
        f'snapaudit_findings{{host="{SEED}",domain="vm-name",rule="SNAP017",severity="error",'
        'suppressed="false"} 1\n'
        "# HELP snapaudit_snapshots Snapshots per domain.\n"
        "# TYPE snapaudit_snapshots gauge\n"
        f'snapaudit_snapshots{{host="{SEED}",domain="vm-name"}} 2\n'
        f'snapaudit_snapshots{{host="{clean}",domain="clean01"}} 1\n'
        f'snapaudit_snapshots{{host="{clean}",domain="nosnap01"}} 0\n'
        "# HELP snapaudit_snapshot_age_seconds Age of each snapshot when the audit ran.\n"
        "# TYPE snapaudit_snapshot_age_seconds gauge\n"
        f'snapaudit_snapshot_age_seconds{{host="{SEED}",domain="vm-name",'
        'snapshot="sample-snapshot-name-2"} 46689976\n'
        # Taken after the pinned clock: an age is what it is, even negative (clock skew).
        f'snapaudit_snapshot_age_seconds{{host="{SEED}",domain="vm-name",'
        'snapshot="sample-snapshot-name-1"} -6572364\n'
        f'snapaudit_snapshot_age_seconds{{host="{clean}",domain="clean01",'
        'snapshot="before-patching"} 86400\n'
        "# HELP snapaudit_scan_success 1 when the host was scanned and everything on it"
        " audited, else 0.\n"
        "# TYPE snapaudit_scan_success gauge\n"
        f'snapaudit_scan_success{{host="{SEED}"}} 1\n'
        f'snapaudit_scan_success{{host="{clean}"}} 1\n'
        "# HELP snapaudit_last_run_timestamp_seconds When the last audit ran, in seconds since"
        " the epoch.\n"
        "# TYPE snapaudit_last_run_timestamp_seconds gauge\n"
        f"snapaudit_last_run_timestamp_seconds {CLOCK}\n"
    )


def test_format_with_a_file_writes_it_and_a_failed_host_reports_zero(tmp_path):
    target = tmp_path / "snapaudit.prom"
    missing = "test:///nonexistent/node.xml"
    proc = run_cli("scan", "-c", missing, "--format", f"prometheus:{target}")
    assert (proc.returncode, proc.stdout) == (3, "")
    assert target.read_text() == (
        "# HELP snapaudit_scan_success 1 when the host was scanned and everything on it"
        " audited, else 0.\n"
        "# TYPE snapaudit_scan_success gauge\n"
        f'snapaudit_scan_success{{host="{missing}"}} 0\n'
        "# HELP snapaudit_last_run_timestamp_seconds When the last audit ran, in seconds since"
        " the epoch.\n"
        "# TYPE snapaudit_last_run_timestamp_seconds gauge\n"
        f"snapaudit_last_run_timestamp_seconds {CLOCK}\n"
    )
