"""pytest fixtures shared by every test: golden files, a libvirtd connection, an installed
rule plugin and `snapaudit` installed for other users. Plain helpers are in tests/helpers.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import libvirt
import pytest
from packaging.requirements import Requirement

from testlab.trees import removed_afterwards
from tests.helpers import REPO

# The real-hypervisor fixtures (libvirtd, embedded_qemu, audit_lab), registered once so that
# every module shares the same session-scoped instances.
pytest_plugins = ["testlab.pytest_fixtures"]


def pytest_addoption(parser):
    parser.addoption(
        "--update-golden", action="store_true", help="rewrite golden files from actual output"
    )


@pytest.fixture
def golden(request):
    """Compare data with a JSON golden file; `pytest --update-golden` rewrites it instead."""

    def check(path: Path, actual) -> None:
        if request.config.getoption("--update-golden"):
            path.write_text(json.dumps(actual, indent=2, ensure_ascii=False) + "\n")
            return
        assert path.exists(), f"{path} is missing: run pytest --update-golden and review it"
        assert actual == json.loads(path.read_text())

    return check


@pytest.fixture
def conn(libvirtd):
    """A connection to the private libvirtd; the domains a test defines on it are removed
    afterwards."""
    conn = libvirt.open(libvirtd.uri)
    with removed_afterwards(conn):
        yield conn
    conn.close()


# A third-party rule package as pip installs one: two working rules and three broken entries.
PLUGIN = '''
from auditor.rule import Violation, rule


@rule("ACME001", "acme-description", "info", tags=("naming",))
def acme_description(snapshot, context):
    """A snapshot has no description.

    What it checks:
        Snapshots without a description.
    Why:
        Operators need to know why a restore point exists.
    Noncompliant:
        <domainsnapshot><name>x</name></domainsnapshot>
    Compliant:
        <domainsnapshot><name>x</name><description>why</description></domainsnapshot>
    Remediation:
        Describe the snapshot.
    Reference:
        ACME runbook 7.
    """
    if not snapshot.description:
        yield Violation("snapshot has no description")


@rule("ACME002", "acme-crash", "error")
def acme_crash(snapshot, context):
    """Always raises."""
    raise RuntimeError("boom\\nsecond line")


@rule("SNAP001", "acme-duplicate", "error")
def acme_duplicate(snapshot, context):
    """Reuses a built-in code."""
    return ()


not_a_rule = 42
'''


@pytest.fixture
def plugin_path(tmp_path, monkeypatch):
    """A real installed-distribution layout (dist-info with entry_points.txt) on sys.path."""
    (tmp_path / "acme_rules.py").write_text(PLUGIN)
    dist = tmp_path / "acme_rules-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-rules\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        textwrap.dedent("""\
        [snapaudit.rules]
        acme-description = acme_rules:acme_description
        acme-crash = acme_rules:acme_crash
        acme-duplicate = acme_rules:acme_duplicate
        acme-not-a-rule = acme_rules:not_a_rule
        acme-missing = acme_rules_missing:rule
        """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("acme_rules", None)


# The distribution's Python, and what it brings itself (python3-libvirt, python3-lxml).
SYSTEM_PYTHON = "/usr/bin/python3"
FROM_THE_SYSTEM = {"libvirt-python", "lxml"}


@pytest.fixture(scope="session")
def world_snapaudit() -> Iterator[str]:
    """The path of a `snapaudit` that every user can run, for tests that run it as another
    user: the checkout and its .venv may lie in a directory only root can enter (/root, or
    `mktemp -d`). A venv of the system's Python (with its libvirt and lxml bindings) in a
    directory of its own that every user can read, holding a copy of this checkout and the
    versions of the other dependencies that this test run has."""
    from testlab.pytest_fixtures import require  # once pytest has loaded it as a plugin

    ready = Path(SYSTEM_PYTHON).exists() and (
        subprocess.run(
            [SYSTEM_PYTHON, "-c", "import ensurepip, libvirt, lxml, setuptools, wheel"],
            capture_output=True,
        ).returncode
        == 0
    )
    require(ready, f"{SYSTEM_PYTHON} with venv, libvirt, lxml, setuptools and wheel is needed")
    top = Path(tempfile.mkdtemp(prefix="snapaudit-for-all-"))
    try:
        top.chmod(0o755)
        source, venv = top / "src", top / "venv"
        shutil.copytree(
            REPO,
            source,
            ignore=shutil.ignore_patterns(
                ".venv", ".git", "*.egg-info", "build", "dist", "__pycache__", ".*_cache"
            ),
        )
        _run([SYSTEM_PYTHON, "-m", "venv", "--system-site-packages", str(venv)])
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps"]
        _run([*pip, "--disable-pip-version-check", *_runtime_requirements()])
        _run([*pip, "--no-build-isolation", str(source)])
        _run(["chmod", "-R", "a+rX", str(top)])  # whatever the umask
        yield str(venv / "bin" / "snapaudit")
    finally:
        shutil.rmtree(top)


def _runtime_requirements() -> list[str]:
    """NAME==VERSION of each distribution snapaudit needs at run time, as this test run has
    it, but for those the system's Python brings."""
    pins: dict[str, str] = {}
    todo = ["snapaudit"]
    while todo:
        for text in metadata.requires(todo.pop()) or ():
            requirement = Requirement(text)
            name = requirement.name.lower()
            if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
                continue
            if name not in pins and name not in FROM_THE_SYSTEM:
                pins[name] = metadata.version(name)
                todo.append(name)
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


def _run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{argv[:4]}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}"
