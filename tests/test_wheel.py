"""The wheel as users install it: built-in rules, templates, schema and demo must ship, and
nothing may land at the top of site-packages except the `auditor` package."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import pytest
from conftest import REPO


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    work = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(work / "dist"), str(REPO)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = (work / "dist").glob("snapaudit-*.whl")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return wheel, venv


def test_wheel_contents(installed):
    wheel, _ = installed
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top_level == {"auditor"}
    for shipped in (
        "auditor/rules/internal_memory.py",
        "auditor/rules/no_domain_definition.py",
        "auditor/reports/templates/report.html.j2",
        "auditor/reports/schemas/report-v1.json",
        "auditor/sources/demo/demo-host.xml",
    ):
        assert shipped in names


def test_installed_wheel_scans_the_demo_host(installed):
    _, venv = installed
    site = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import sysconfig; print(sysconfig.get_path('purelib'))",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert not any((venv / site / name).exists() for name in ("rules", "reports", "tests"))

    snapaudit = str(venv / "bin" / "snapaudit")
    listing = subprocess.run([snapaudit, "rules"], capture_output=True, text=True, timeout=60)
    assert listing.returncode == 0 and listing.stderr == ""
    assert [line.split()[0] for line in listing.stdout.splitlines()] == ["HOST001"] + [
        f"SNAP{i:03d}" for i in range(1, 19)
    ]
    scan = subprocess.run(
        [snapaudit, "scan", "--demo", "--format", "json"],
        env={**os.environ, "SOURCE_DATE_EPOCH": "1764000000"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert scan.returncode == 1, scan.stderr
    report = json.loads(scan.stdout)
    assert report["summary"]["findings"] == {"error": 9, "warning": 8, "info": 0}
    assert report["rule_errors"] == []
    html = subprocess.run(
        [snapaudit, "scan", "--demo", "--format", "html"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert html.returncode == 1 and "&lt;img src=x onerror=alert(1)&gt;" in html.stdout
