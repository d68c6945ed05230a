"""PID 1 of the private libvirtd's mount and PID namespaces; daemon.py runs it via unshare(1).

Usage: python _nsinit.py ROOT LIFELINE_FD

A privileged libvirtd hard-codes /etc/libvirt, /var/lib/libvirt, /run/libvirt and friends, so
ROOT's private trees are bind-mounted over them in a mount namespace the host never sees.
QEMU daemonizes and is re-parented to this process, which must reap it at once: libvirt waits
for an exited QEMU to vanish, and with libvirtd itself as PID 1 the first VM start took 80 s.
It exits when libvirtd exits or when the lifeline pipe reaches EOF (the owner stopped or died);
the kernel then SIGKILLs everything left in the namespace, QEMU included.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

# ROOT subdirectory -> path the privileged daemon uses (/var/run is a symlink to /run).
MOUNTS = {
    "etc": "/etc/libvirt",
    "lib": "/var/lib/libvirt",
    "run": "/run/libvirt",
    "log": "/var/log/libvirt",
    "cache": "/var/cache/libvirt",
}
SHUTDOWN_GRACE = 5.0


def _mount(root: Path) -> None:
    # A fresh /run gives /run/libvirt a mount point without creating it on the host.
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/run"], check=True)
    Path("/run/libvirt").mkdir()
    for sub, target in MOUNTS.items():
        subprocess.run(["mount", "--bind", str(root / sub), target], check=True)


def _stop_when_orphaned(lifeline: int, daemon: int) -> None:
    while os.read(lifeline, 1):
        pass
    os.kill(daemon, signal.SIGTERM)
    time.sleep(SHUTDOWN_GRACE)
    os._exit(1)


def main() -> int:
    root, lifeline = Path(sys.argv[1]), int(sys.argv[2])
    os.set_inheritable(lifeline, False)
    _mount(root)
    daemon = os.posix_spawnp("libvirtd", ["libvirtd"], os.environ)
    threading.Thread(target=_stop_when_orphaned, args=(lifeline, daemon), daemon=True).start()
    while True:
        pid, status = os.wait()
        if pid == daemon:
            return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main())
