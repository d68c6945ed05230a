"""The wheel as users install it: built-in rules, templates, schema and demo must ship, and
nothing may land at the top of site-packages except the `auditor` package."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.helpers import REPO

BIN = Path(sys.executable).parent


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
    # .data holds the man page and shell completion, installed under the environment's share/.
    top_level = {
        n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))
    }
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
    demo_report(snapaudit)
    html = subprocess.run(
        [snapaudit, "scan", "--demo", "--format", "html"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert html.returncode == 1 and "&lt;img src=x onerror=alert(1)&gt;" in html.stdout


# --- on the distribution's own Python and bindings --------------------------------------------

SYSTEM_PYTHON = "/usr/bin/python3"


def test_wheel_on_the_system_bindings_at_the_dependency_floors(installed, tmp_path):
    """pip install --only-binary=:all: into a --system-site-packages venv of the distribution's
    Python: libvirt-python and lxml are the distribution's own (Debian 12: 9.0 and 4.9, the
    floors in pyproject.toml), nothing is compiled, and the demo scan gives the same report."""
    from testlab.pytest_fixtures import require

    probe = "import libvirt, lxml, venv"
    require(
        Path(SYSTEM_PYTHON).exists()
        and subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True).returncode == 0,
        "the system Python lacks python3-libvirt, python3-lxml or venv (scripts/setup.sh --test)",
    )
    wheel, _ = installed
    venv = tmp_path / "venv"
    subprocess.run(
        [SYSTEM_PYTHON, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120
    )
    pip = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--only-binary=:all:", str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr
    python = str(venv / "bin" / "python")
    where = subprocess.run(
        [
            python,
            "-c",
            "import importlib.metadata as m, libvirt, lxml, sys; "
            "print(m.version('libvirt-python'), m.version('lxml'), libvirt.__file__, "
            "lxml.__file__, sys.prefix)",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    libvirt_version, lxml_version, libvirt_file, lxml_file, prefix = where
    # The distribution's packages, not copies from the package index inside the venv.
    assert not libvirt_file.startswith(prefix) and not lxml_file.startswith(prefix)
    floors = {
        name: version
        for name, _, version in (
            dep.partition(">=")
            for dep in tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
                "dependencies"
            ]
        )
    }
    assert libvirt_version.split(".")[:2] == floors["libvirt-python"].split(".")
    assert lxml_version.split(".")[:2] == floors["lxml"].split(".")
    # The man page and completion land in the venv's share/, where man and bash look.
    assert (venv / "share" / "man" / "man1" / "snapaudit.1").is_file()
    assert (venv / "share" / "bash-completion" / "completions" / "snapaudit").is_file()

    snapaudit = str(venv / "bin" / "snapaudit")
    # The same findings as from the development install, fingerprints and host included.
    assert demo_report(snapaudit)["findings"] == demo_report(str(BIN / "snapaudit"))["findings"]


def demo_report(snapaudit: str) -> dict:
    """The installed command's JSON report of the demo host as a user first sees it (no
    --as-of), with its exact counts checked: the same whatever the date."""
    unpinned = {
        k: v for k, v in os.environ.items() if k not in ("SNAPAUDIT_AS_OF", "SOURCE_DATE_EPOCH")
    }
    scan = subprocess.run(
        [snapaudit, "scan", "--demo", "--format", "json"],
        env=unpinned,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert scan.returncode == 1, scan.stderr
    report = json.loads(scan.stdout)
    assert [h["uri"] for h in report["hosts"]] == ["demo"]
    assert report["summary"]["findings"] == {"error": 9, "warning": 8, "info": 0}
    assert sum(f["rule"] == "SNAP013" for f in report["findings"]) == 3
    assert report["rule_errors"] == []
    return report
