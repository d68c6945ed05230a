"""One fix at a time per domain on this host, whatever state directory or journal copy each
uses: an exclusive flock on LOCK_DIR/UUID.lock, a fixed place. A journal command also locks
the journal file itself, so that two copies of one journal path never run at once.

The kernel drops a flock when its holder exits in any way, SIGKILL included, so a crashed fix
never leaves a stale lock behind. Nothing is ever written to a lock file, and it is opened
without following a symlink, inside a directory that only root or the invoking user can write
to (opened itself without following one): a link planted there redirects nothing, and nobody
else can take a domain's lock away.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from auditor import safefs
from auditor.display import Problem

LOCK_DIR = Path("/run/snapaudit/fix")


class LockBusy(Problem):
    def __init__(self, path: Path):
        super().__init__(f"another snapaudit fix is working on this domain (lock {path})")
        self.path = path


class LockError(Problem):
    """The lock cannot be taken at all; the message is one line."""


@contextlib.contextmanager
def domain_lock(uuid: str, directory: Path = LOCK_DIR) -> Iterator[Path]:
    path = directory / f"{uuid}.lock"
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Walked from /: no directory above it that another user controls is followed.
        with safefs.chase(str(directory), follow_last=False) as found:
            flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
            where = os.open(found.name, flags, dir_fd=found.dir_fd)
    except safefs.Untrusted as exc:
        raise LockError(f"cannot take the lock {path}: {exc}") from None
    except OSError as exc:
        raise LockError(_cannot(path, directory, exc)) from None
    try:
        st = os.fstat(where)
        unsafe = safefs.untrusted_directory(
            str(directory), st.st_uid, st.st_mode, safefs.trusted_uids()
        )
        if unsafe:
            raise LockError(f"cannot take the lock {path}: {unsafe}")
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(path.name, flags, 0o600, dir_fd=where)
    except OSError as exc:
        raise LockError(_cannot(path, path, exc)) from None
    finally:
        os.close(where)
    try:
        _exclusive(fd, path)
        yield path
    finally:
        os.close(fd)


@contextlib.contextmanager
def journal_lock(journal: Path) -> Iterator[None]:
    """The journal file itself, opened read-only: works in a read-only directory too."""
    try:
        fd = os.open(journal, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise LockError(f"cannot open journal {journal}: {exc.strerror}") from None
    try:
        _exclusive(fd, journal)
        yield
    finally:
        os.close(fd)


def _cannot(path: Path, where: Path, exc: OSError) -> str:
    if exc.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(where):
        return f"cannot take the lock {path}: {where} is a symlink"
    return f"cannot create the lock {path}: {exc.strerror}"


def _exclusive(fd: int, path: Path) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise LockBusy(path) from None
