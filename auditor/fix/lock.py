"""One fix at a time per domain: an exclusive flock on STATE_DIR/UUID.lock.

The kernel drops the lock when its holder exits in any way, SIGKILL included, so a crashed
fix never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


class LockBusy(Exception):
    def __init__(self, path: Path):
        super().__init__(f"another snapaudit fix is working on this domain (lock {path})")
        self.path = path


@contextlib.contextmanager
def domain_lock(state_dir: Path, uuid: str) -> Iterator[Path]:
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = state_dir / f"{uuid}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockBusy(path) from None
        yield path
    finally:
        os.close(fd)
