"""pytest fixtures shared by every test: golden files, a libvirtd connection and an installed
rule plugin. Plain helpers are in tests/helpers.py."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import libvirt
import pytest

from testlab.trees import removed_afterwards

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
