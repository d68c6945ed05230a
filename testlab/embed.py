"""The embedded QEMU driver (qemu:///embed?root=DIR): real QEMU, in-process, no daemon.

libvirt binds a process to the first embedded root it opens, for the life of the process (even
after close), so open one root per process: the session fixture does.
"""

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import libvirt

from auditor.sources.live.connection import start_event_loop
from testlab.qemuconf import write_qemu_conf

# Running as root, the driver still creates these host paths, which no setting moves.
HOST_RUN = Path("/run/libvirt")
HOST_LEFTOVERS = (
    HOST_RUN / "common" / "system.token",
    HOST_RUN / "common",
    HOST_RUN / "hostdevmgr",
    HOST_RUN,
)

_lock = threading.Lock()
_created_host_run = False


def open_embedded(root: Path) -> libvirt.virConnect:
    """Open qemu:///embed?root=ROOT (created if needed) with a container-friendly qemu.conf."""
    global _created_host_run
    root = Path(root).resolve()
    write_qemu_conf(root / "etc")
    with _lock:
        start_event_loop()  # the embedded driver runs on it; one per process
        _created_host_run |= not HOST_RUN.exists()
    return libvirt.open(f"qemu:///embed?root={root}")


def close_embedded(conn: libvirt.virConnect) -> None:
    """Destroy the running VMs (embedded QEMU is daemonized: it would outlive this process),
    close CONN, and remove the host's /run/libvirt if open_embedded brought it into being."""
    for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
        dom.destroy()
    conn.close()
    if _created_host_run:
        _remove_host_leftovers()


@contextlib.contextmanager
def host_run_removed_afterwards() -> Iterator[None]:
    """For other processes that open embedded roots (snapaudit itself, run by a test): the
    host's /run/libvirt they bring into being is removed afterwards."""
    existed = HOST_RUN.exists()
    try:
        yield
    finally:
        if not existed:
            _remove_host_leftovers()


def _remove_host_leftovers() -> None:
    for path in HOST_LEFTOVERS:
        with contextlib.suppress(OSError):  # a directory holding more is not ours alone
            if path.is_dir():
                path.rmdir()
            else:
                path.unlink()
