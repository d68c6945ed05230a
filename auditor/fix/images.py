"""The image operations fix mode is built from: qemu-img and qemu-nbd, nothing else.

A source image (the domain's original qcow2) is only ever opened read-only: `qemu-nbd -r`,
`qemu-img convert/measure/compare/info` reading it (`info -U` when a running VM holds it,
for a plan that will refuse the domain anyway). New images are written inside
`PATH.part`, a directory only we can enter, flushed, then renamed to PATH without replacing
anything, so a complete-looking file is always a complete one, and another user who can write
to the directory cannot redirect the write or the chown/chmod that follows it.

Every child process dies with fix (`die_with_parent`), SIGKILL included, so no
`qemu-img` goes on writing once fix is gone; a killed child is reported with its signal.
The private directories of NBD sockets are removed on every way out, and those a killed fix
left behind are removed by the next one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from auditor import safefs
from auditor.display import Problem
from auditor.images import qemu
from auditor.stopping import die_with_parent

NBD_START_TIMEOUT = 30.0
PART = "image.qcow2"  # the new image, inside PATH.part: a directory only we can enter
_EXPORTS = "snapaudit-nbd-"  # + the pid of the fix that made it


def remove_stale_exports() -> None:
    """Remove the socket directories that fix processes no longer alive left behind."""
    base = tempfile.gettempdir()
    with contextlib.suppress(OSError):
        for name in os.listdir(base):
            pid = name.removeprefix(_EXPORTS).split("-")[0]
            if not name.startswith(_EXPORTS) or not pid.isdigit() or _alive(int(pid)):
                continue
            path = os.path.join(base, name)
            with contextlib.suppress(OSError):
                if os.lstat(path).st_uid == os.getuid() and stat.S_ISDIR(os.lstat(path).st_mode):
                    shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ImageError(Problem):
    """A qemu tool failed, or a new image does not match its source."""


def _run(*args: str) -> str:
    proc = _child(args)
    if proc.returncode:
        raise ImageError(f"{args[0]} {args[1]}: {qemu.failure(proc)}")
    return proc.stdout


def _child(args: tuple[str, ...] | list[str]) -> subprocess.CompletedProcess:
    try:
        return qemu.child(args)
    except OSError as exc:
        raise ImageError(f"{args[0]}: {exc.strerror}") from None


def snapshot_option(tag: str) -> str:
    """`-l` argument naming internal snapshot TAG: by name only (never an ID), commas escaped
    as QEMU's option syntax wants."""
    return "snapshot.name=" + tag.replace(",", ",,")


def info(path: str, fmt: str | None = None, *, force_share: bool = False) -> dict:
    """`qemu-img info` of PATH alone; force_share reads an image a running VM holds."""
    try:
        return qemu.img_info(path, fmt=fmt, force_share=force_share)
    except qemu.QemuToolError as exc:
        raise ImageError(f"qemu-img info: {exc}") from None


def measure(source: str, fmt: str, tag: str | None) -> int:
    """Bytes a full qcow2 copy of SOURCE (at internal snapshot TAG) needs."""
    args = ["qemu-img", "measure", "--output=json", "-O", "qcow2", "-f", fmt]
    args += ["-l", snapshot_option(tag)] if tag is not None else []
    return int(json.loads(_run(*args, source))["required"])


def metadata_bytes(virtual_size: int, cluster_size: int) -> int:
    """What an empty qcow2 image of that size takes: headers, tables, refcounts."""
    args = ["qemu-img", "measure", "--output=json", "-O", "qcow2"]
    args += ["-o", f"cluster_size={cluster_size}", "--size", str(virtual_size)]
    return int(json.loads(_run(*args))["required"])


@contextlib.contextmanager
def export(source: str, fmt: str, tag: str | None) -> Iterator[str]:
    """Serve SOURCE, or its internal snapshot TAG, read-only over NBD on a private socket;
    yields the NBD URI. qemu-img opens it as a raw image."""
    remove_stale_exports()
    with tempfile.TemporaryDirectory(prefix=f"{_EXPORTS}{os.getpid()}-") as tmp:
        sock = os.path.join(tmp, "nbd.sock")
        args = ["qemu-nbd", "--read-only", "--persistent", "--shared=8", "--format", fmt]
        args += ["--socket", sock] + (["--load-snapshot", snapshot_option(tag)] if tag else [])
        with tempfile.TemporaryFile() as errors:
            proc = subprocess.Popen(
                [*args, source],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=errors,
                preexec_fn=die_with_parent(),
                process_group=0,  # as qemu.child: Ctrl-C stops fix between steps only
            )
            try:
                _wait_for_socket(proc, sock, errors)
                try:
                    yield f"nbd+unix:///?socket={sock}"
                except ImageError:
                    _check_serving(proc, errors)  # the reader failed because the server died
                    raise
                _check_serving(proc, errors)  # what the reader got was not all served
            finally:
                proc.terminate()
                proc.wait()


def _check_serving(proc: subprocess.Popen, errors) -> None:
    """Raise ImageError if qemu-nbd has ended: --persistent, it ends only when it fails or is
    killed, and then that, not the reader's lost connection, is what went wrong."""
    if proc.poll() is not None:
        raise ImageError(f"qemu-nbd: {_ended(proc, errors)}") from None


def _wait_for_socket(proc: subprocess.Popen, sock: str, errors) -> None:
    # qemu-nbd listens before it has opened the image and loaded the snapshot; it is serving
    # only once it greets a client. A missing snapshot shows up as a closed connection.
    deadline = time.monotonic() + NBD_START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ImageError(f"qemu-nbd: {_ended(proc, errors)}")
        with socket.socket(socket.AF_UNIX) as probe, contextlib.suppress(OSError):
            probe.settimeout(max(deadline - time.monotonic(), 0.001))
            probe.connect(sock)
            if probe.recv(8) == b"NBDMAGIC":
                return
        time.sleep(0.005)
    raise ImageError(f"qemu-nbd: not serving after {NBD_START_TIMEOUT:.0f} s")


def _ended(proc: subprocess.Popen, errors) -> str:
    """Why qemu-nbd ended: the signal that killed it, or its last line of errors."""
    if proc.returncode < 0:
        return f"killed by {signal.Signals(-proc.returncode).name}"
    errors.seek(0)
    lines = errors.read().decode(errors="replace").strip().splitlines()
    return lines[-1].removeprefix("qemu-nbd: ") if lines else "exited"


def part_path(path: str) -> str:
    return path + ".part"


def discard(path: str) -> None:
    """Remove PATH and its unfinished .part, if there."""
    safefs.remove_private_dir(part_path(path))
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def create_image(
    path: str,
    source: str,
    fmt: str,
    tag: str | None,
    backing: str | None,
    cluster_size: int,
    created: Callable[[str], None] = lambda made: None,
) -> safefs.FileStamp:
    """PATH holds SOURCE's content at internal snapshot TAG (None: the active layer): a full
    image when BACKING is None, otherwise an overlay on BACKING holding only what differs.
    CREATED is told the finished file before it is renamed into place (its identity stays)."""
    discard(path)  # what an interrupted attempt left behind
    options = f"cluster_size={cluster_size}"
    with safefs.PrivateDir(part_path(path)) as work:
        part = work.tool_path(PART)
        if backing is None:
            args = ["qemu-img", "convert", "-q", "-f", fmt, "-O", "qcow2", "-o", options]
            _run(*args, *(["-l", snapshot_option(tag)] if tag is not None else []), source, part)
        else:
            # The overlay starts on the source state itself; safe-mode rebase onto the parent's
            # image then writes exactly the clusters whose content differs (LAB.md).
            with export(source, fmt, tag) as nbd:
                create = ["qemu-img", "create", "-q", "-f", "qcow2", "-o", options]
                _run(*create, "-b", nbd, "-F", "raw", part)
                rebase = ["qemu-img", "rebase", "-q", "-f", "qcow2", "-b", backing, "-F", "qcow2"]
                _run(*rebase, part)
        created(part)
        return work.finish(PART, os.path.basename(path), like=os.stat(source))


def create_overlay(
    path: str, backing: str, created: Callable[[str], None] = lambda made: None
) -> safefs.FileStamp:
    """An empty qcow2 overlay on BACKING (one of our new images, never an original)."""
    discard(path)
    with safefs.PrivateDir(part_path(path)) as work:
        create = ["qemu-img", "create", "-q", "-f", "qcow2", "-b", backing, "-F", "qcow2"]
        made = work.tool_path(PART)
        _run(*create, made)
        created(made)
        return work.finish(PART, os.path.basename(path), like=os.stat(backing))


def verify_image(path: str, source: str, fmt: str, tag: str | None) -> None:
    """Raise ImageError unless PATH shows exactly the guest content of SOURCE at TAG."""
    with export(source, fmt, tag) as nbd:
        want = info(nbd, "raw")["virtual-size"]
        have = info(path, "qcow2")["virtual-size"]
        if want != have:
            raise ImageError(f"{path}: virtual size {have}, source has {want}")
        # Not strict: an unallocated cluster and a zeroed one are the same to the guest.
        proc = _child(["qemu-img", "compare", "-q", "-f", "qcow2", "-F", "raw", path, nbd])
    if proc.returncode == 1:
        raise ImageError(f"{path}: content differs from its source")
    if proc.returncode:
        raise ImageError(f"qemu-img compare: {qemu.failure(proc)}")


def same_content(path: str, fmt: str, other: str, other_fmt: str) -> bool:
    """Whether two images (or chains) show the guest the same bytes, both read-only. A
    comparison that could not be made (exit 2, or killed) raises ImageError: it proves
    nothing either way."""
    with export(other, other_fmt, None) as nbd:
        proc = _child(["qemu-img", "compare", "-q", "-f", fmt, "-F", "raw", path, nbd])
    if proc.returncode not in (0, 1):
        raise ImageError(f"qemu-img compare {path} {other}: {qemu.failure(proc)}")
    return proc.returncode == 0


def fsync_dir(path: str) -> None:
    fd = os.open(path or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_file(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    fsync_dir(str(Path(path).parent))
