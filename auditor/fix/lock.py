"""One fix at a time per domain on this host, whatever state directory or journal copy each
uses: an exclusive flock on LOCK_DIR/UUID.lock, a fixed place. A journal command also locks
the journal file itself, so that two copies of one journal path never run at once.

The kernel drops a flock when its holder exits in any way, SIGKILL included, so a crashed fix
never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

LOCK_DIR = Path("/run/snapaudit/fix")


class LockBusy(Exception):
    def __init__(self, path: Path):
        super().__init__(f"another snapaudit fix is working on this domain (lock {path})")
        self.path = path


class LockError(Exception):
    """The lock cannot be taken at all; the message is one line."""


@contextlib.contextmanager
def domain_lock(uuid: str, directory: Path = LOCK_DIR) -> Iterator[Path]:
    path = directory / f"{uuid}.lock"
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise LockError(f"cannot create the lock {path}: {exc.strerror}") from None
    try:
        _exclusive(fd, path)
        yield path
    finally:
        os.close(fd)


@contextlib.contextmanager
def journal_lock(journal: Path) -> Iterator[None]:
    """The journal file itself, opened read-only: works in a read-only directory too."""
    try:
        fd = os.open(journal, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise LockError(f"cannot open journal {journal}: {exc.strerror}") from None
    try:
        _exclusive(fd, journal)
        yield
    finally:
        os.close(fd)


def _exclusive(fd: int, path: Path) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise LockBusy(path) from None
