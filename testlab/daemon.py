"""A private, throwaway libvirtd (qemu:///system semantics, read-only socket included).

Recipe: `unshare --mount --pid --fork --mount-proc --kill-child` runs _nsinit.py as PID 1 of new
namespaces; it bind-mounts ROOT/{etc,lib,run,log,cache} over the daemon's hard-coded paths and
runs libvirtd. The host's files stay untouched and its socket is reachable at ROOT/run. Every
process the daemon starts lives in the PID namespace, so ending its PID 1 ends them all.
"""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import libvirt

from testlab.qemuconf import write_qemu_conf

NSINIT = Path(__file__).with_name("_nsinit.py")
# --kill-child: should unshare itself be killed, its child (the namespace's PID 1) goes too.
UNSHARE = ["unshare", "--mount", "--pid", "--fork", "--mount-proc", "--kill-child"]

# Root owns the private socket directory, so authentication adds nothing here.
LIBVIRTD_CONF = """\
auth_unix_ro = "none"
auth_unix_rw = "none"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
"""


def missing_prerequisites() -> list[str]:
    """What this machine lacks to run LibvirtDaemon (empty when nothing is missing)."""
    if os.geteuid() != 0:
        return ["root (a privileged libvirtd and mount namespaces)"]
    missing = [
        tool
        for tool in ("libvirtd", "unshare", "mount", "qemu-system-x86_64")
        if not shutil.which(tool)
    ]
    probe = ["unshare", "--mount", "--pid", "--fork", "true"]
    if not missing and subprocess.run(probe, capture_output=True).returncode:
        missing.append("permission to create mount and PID namespaces")
    return missing


class LibvirtDaemon:
    """`with LibvirtDaemon(root) as d: libvirt.open(d.uri)`; root is created if needed."""

    def __init__(self, root: Path, *, timeout: float = 30.0):
        self.root = Path(root)
        self.timeout = timeout
        self._proc: subprocess.Popen | None = None
        self._lifeline: int | None = None

    @property
    def socket(self) -> Path:
        return self.root / "run" / "libvirt-sock"

    @property
    def uri(self) -> str:
        """Read-write socket: libvirt.open() and libvirt.openReadOnly() both accept it."""
        return f"qemu+unix:///system?socket={self.socket}"

    @property
    def ro_uri(self) -> str:
        """The daemon's read-only socket: only libvirt.openReadOnly() accepts it."""
        return f"qemu+unix:///system?socket={self.socket}-ro"

    @property
    def log(self) -> Path:
        return self.root / "log" / "libvirtd.log"

    def start(self) -> "LibvirtDaemon":
        if self._proc:
            raise RuntimeError("libvirtd already started")
        for sub in ("etc", "lib", "run", "log", "cache"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "etc" / "libvirtd.conf").write_text(LIBVIRTD_CONF)
        write_qemu_conf(self.root / "etc")
        self.socket.unlink(missing_ok=True)
        # The init inside the namespace reads this pipe; EOF (stop(), or this process dying
        # in any way) makes it shut the namespace down.
        reader, self._lifeline = os.pipe()
        with (self.root / "log" / "init.log").open("ab") as out:
            self._proc = subprocess.Popen(
                [*UNSHARE, sys.executable, str(NSINIT), str(self.root), str(reader)],
                pass_fds=[reader],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        os.close(reader)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"libvirtd exited with {self._proc.returncode}\n{self._logs()}")
            if self._accepts():
                libvirt.open(self.uri).close()  # the daemon answers, drivers loaded
                return
            time.sleep(0.05)
        raise TimeoutError(f"libvirtd not ready after {self.timeout} s\n{self._logs()}")

    def _accepts(self) -> bool:
        with socket.socket(socket.AF_UNIX) as sock:
            try:
                sock.connect(str(self.socket))
            except OSError:
                return False
        return True

    def _logs(self) -> str:
        parts = []
        for path in (self.root / "log" / "init.log", self.log):
            text = path.read_text(errors="replace") if path.exists() else "(none)"
            parts.append(f"--- {path}\n{text[-4000:]}")
        return "\n".join(parts)

    def stop(self) -> None:
        """End libvirtd and every QEMU it started; safe to call twice."""
        if self._lifeline is not None:
            os.close(self._lifeline)
            self._lifeline = None
        if self._proc is None:
            return
        try:
            self._proc.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()  # --kill-child passes the SIGKILL on to the namespace's PID 1
            self._proc.wait()
        self._proc = None

    def __enter__(self) -> "LibvirtDaemon":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
