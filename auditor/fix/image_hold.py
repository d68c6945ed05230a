"""Keeping QEMU from opening an image for writing, the way QEMU keeps itself from it.

QEMU (`qemu-system-*`, `qemu-img`, `qemu-io`, `qemu-nbd`) locks the bytes of an image file it
opens with open file description locks: byte 100 + P while it uses permission P, byte 200 + P
while it forbids others to use P. Before a process takes the write permission it tests byte
201. A read lock on byte 201 therefore makes every later `virsh start` of a domain on that
image fail ("Failed to get "write" lock"), while readers (qemu-img convert, qemu-nbd -r) go on.
The kernel drops the lock with the last descriptor, so a killed fix holds nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
from collections.abc import Iterable, Iterator

from auditor.display import Problem

_WRITE = 1  # BLK_PERM_WRITE is bit 1
_USES = 100  # QEMU_LOCK_BASE_PERM
_FORBIDS = 200  # QEMU_LOCK_SHARED_BASE
_FLOCK = "hhqqi4x"  # struct flock on 64-bit Linux: type, whence, start, len, pid


class HoldError(Problem):
    """An image is open for writing by some other process; the message is one line."""


def _lock(fd: int, kind: int, byte: int, command: int) -> int:
    result = fcntl.fcntl(fd, command, struct.pack(_FLOCK, kind, os.SEEK_SET, byte, 1, 0))
    return struct.unpack(_FLOCK, result)[0]


def writer(fd: int) -> bool:
    """Whether another process has the image open with QEMU's write permission."""
    return _lock(fd, fcntl.F_WRLCK, _USES + _WRITE, fcntl.F_OFD_GETLK) != fcntl.F_UNLCK


@contextlib.contextmanager
def no_writers(paths: Iterable[str]) -> Iterator[None]:
    """Forbid QEMU to open PATHS for writing while inside; raise HoldError if a process has
    one open for writing already. Paths that do not exist are skipped."""
    fds: list[int] = []
    try:
        for path in paths:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            fds.append(fd)
            _lock(fd, fcntl.F_RDLCK, _FORBIDS + _WRITE, fcntl.F_OFD_SETLK)
            if writer(fd):
                raise HoldError(
                    f"{path} is open for writing by another process (a running guest, "
                    "qemu-io or qemu-nbd): stop it first"
                )
        yield
    finally:
        for fd in fds:
            os.close(fd)
