"""Session fixtures over real libvirt and QEMU, and the skip-or-fail-in-CI rule.

A test module imports the fixtures it uses, e.g.
`from testlab.pytest_fixtures import libvirtd, embedded_qemu  # noqa: F401`.
"""

import os
import shutil
from collections.abc import Iterator

import libvirt
import pytest

from testlab import lab
from testlab.daemon import LibvirtDaemon, missing_prerequisites
from testlab.embed import close_embedded, open_embedded

QEMU_TOOLS = ("qemu-system-x86_64", "qemu-img", "qemu-io")


def require(cond: object, reason: str) -> None:
    """Skip unless COND holds; under CI=true fail instead, since CI must have everything."""
    if cond:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"missing prerequisite in CI: {reason}")
    pytest.skip(reason)


def require_qemu_tools() -> None:
    missing = [tool for tool in QEMU_TOOLS if not shutil.which(tool)]
    require(not missing, f"not installed: {', '.join(missing)}")


def require_libvirtd() -> None:
    require_qemu_tools()
    missing = missing_prerequisites()
    require(not missing, f"a private libvirtd needs {', '.join(missing)}")


@pytest.fixture(scope="session")
def libvirtd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LibvirtDaemon]:
    """One private libvirtd for the session; its VMs die with it."""
    require_libvirtd()
    with LibvirtDaemon(tmp_path_factory.mktemp("libvirtd")) as daemon:
        yield daemon


@pytest.fixture(scope="session")
def embedded_qemu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[libvirt.virConnect]:
    """The qemu:///embed connection: libvirt allows one embedded root per process."""
    require_qemu_tools()
    require(os.geteuid() == 0, "the embedded driver runs QEMU as root here")
    conn = open_embedded(tmp_path_factory.mktemp("embed"))
    yield conn
    close_embedded(conn)


@pytest.fixture(scope="session")
def audit_lab(embedded_qemu, tmp_path_factory):
    """The audit lab (testlab.lab) built once on the embedded driver: (connection, images)."""
    images = tmp_path_factory.mktemp("lab-images")
    nbd = lab.build(embedded_qemu, images)
    yield embedded_qemu, images
    nbd.stop()
