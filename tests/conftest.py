"""Shared test helpers: fixture URIs, CLI runs, golden files, and a libvirtd connection."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from subprocess import PIPE

import libvirt
import pytest

from testlab.trees import removed_afterwards

# The real-hypervisor fixtures (libvirtd, embedded_qemu, audit_lab), registered once so that
# every module shares the same session-scoped instances.
pytest_plugins = ["testlab.pytest_fixtures"]

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).parent.parent
SNAPAUDIT = str(Path(sys.executable).parent / "snapaudit")
# The test suite's own `snapaudit`, with the fault points of a conversion armed from the
# environment (SNAPAUDIT_FIX_*): the installed command ignores those variables.
FAULTY_SNAPAUDIT = [sys.executable, str(Path(__file__).parent / "faulty_snapaudit.py")]


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


def fixture_uri(path: Path | str) -> str:
    return f"test://{(FIXTURES / path).resolve()}"


# The clock of CLI runs (SOURCE_DATE_EPOCH): a day after the fixtures' snapshots were taken
# (1700000000), so that snapshot ages are exact.
CLOCK = "1700086400"


def run_cli(
    *args: str, env: dict | None = None, faulty: bool = False
) -> subprocess.CompletedProcess:
    """Run the installed `snapaudit` command for real, as a user or a CI job would; FAULTY:
    the test suite's, its fault points armed by ENV."""
    return subprocess.run(**_cli(args, env, faulty), capture_output=True, timeout=120)


def start_cli(
    *args: str, env: dict | None = None, faulty: bool = False, cwd: Path | None = None
) -> subprocess.Popen:
    """run_cli, started: the caller waits for it (or stops it, or kills it)."""
    return subprocess.Popen(**_cli(args, env, faulty), stdout=PIPE, stderr=PIPE, cwd=cwd)


def _cli(args: tuple[str, ...], env: dict | None, faulty: bool) -> dict:
    command = FAULTY_SNAPAUDIT if faulty else [SNAPAUDIT]
    clocked = {**os.environ, "SOURCE_DATE_EPOCH": CLOCK, **(env or {})}
    return {"args": [*command, *args], "env": clocked, "text": True}
