"""Reports and baselines: where a write to a path goes (walked by chase.py), and replacing a
file atomically through the directory the walk checked."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import secrets
import stat
import sys
from collections.abc import Callable, Iterable, Iterator

from auditor.display import Problem
from auditor.safefs.chase import (
    Found,
    Untrusted,
    chase,
    directory_problem,
    not_ours,
    trusted_uids,
)

_RENAME_NOREPLACE = 1
_AT_FDCWD = -100


class WriteError(Problem, OSError):
    """A file that cannot or must not be written; the message is one line naming it."""


def untrusted_directory(path: str, owner: int, mode: int, trusted: frozenset[int]) -> str | None:
    """Why another user could swap files in directory PATH under us, or None: sticky or not,
    a directory others may write to is refused (fix mode's image and lock directories)."""
    return directory_problem(path, owner, mode, trusted, sticky=False)


def _kind(found: Found, shown: str) -> str:
    """How a write to what FOUND names goes: "fd", "new", "replace" or "through"."""
    if found.descriptor is not None:
        return "fd"
    st = found.st
    if st is None:
        return "new"
    if stat.S_ISREG(st.st_mode):
        return "replace"
    if stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode):
        if stat.S_ISFIFO(st.st_mode) and st.st_uid not in trusted_uids():
            raise WriteError(f"cannot write {shown}: {not_ours(f'FIFO {found.path}', st.st_uid)}")
        return "through"
    what = "a directory" if stat.S_ISDIR(st.st_mode) else "not a file, device or FIFO"
    raise WriteError(f"cannot write {shown}: it is {what}")


@contextlib.contextmanager
def _target(shown: str) -> Iterator[tuple[Found, str]]:
    """Where a write to SHOWN goes, walked from / (see chase), and how it goes; every
    refusal or failure is a WriteError that names SHOWN."""
    try:
        with chase(shown) as found:
            yield found, _kind(found, shown)
    except WriteError:
        raise
    except Untrusted as exc:
        raise WriteError(f"cannot write {shown}: {exc}") from None
    except FileNotFoundError:
        directory = os.path.dirname(shown) or "."
        raise WriteError(f"cannot write {shown}: directory {directory} does not exist") from None
    except OSError as exc:
        raise WriteError(f"cannot write {shown}: {exc.strerror or exc}") from None


def output_problem(*paths: os.PathLike | str | None) -> str | None:
    """Why the first of PATHS (None: standard output) could not be written, as one line;
    checked before any work is done."""
    try:
        for shown in (os.fspath(p) for p in paths if p is not None):
            with _target(shown) as (found, kind):
                if kind == "fd":
                    # A descriptor closed now would be one snapaudit opens for itself later.
                    os.fstat(found.descriptor or 0)
                    continue
                if kind == "through":
                    writable = os.access(found.name, os.W_OK, dir_fd=found.dir_fd)
                    if not writable:
                        raise WriteError(f"cannot write {shown}: permission denied")
                elif not os.access(".", os.W_OK | os.X_OK, dir_fd=found.dir_fd):
                    directory = found.directory if found.followed else os.path.dirname(shown)
                    raise WriteError(
                        f"cannot write {shown}: directory {directory or '.'} is not writable"
                    )
    except WriteError as exc:
        return str(exc)
    return None


def attempt(write: Callable[..., object], *args: object) -> str | None:
    """Run one WRITE; its WriteError as one line, so that the other outputs still get written."""
    try:
        write(*args)
    except WriteError as exc:
        return str(exc)
    return None


def write_file(path: os.PathLike | str, text: str | bytes | Iterable[str]) -> None:
    """Write a report or a baseline to PATH by the rules in this package's docstring. TEXT
    may come as pieces, each written as it comes: a large report never sits whole in memory."""
    shown = os.fspath(path)
    if isinstance(text, str | bytes):
        data: Iterable[bytes] = (text.encode("utf-8") if isinstance(text, str) else text,)
    else:
        data = (piece.encode("utf-8") for piece in text)
    with _target(shown) as (found, kind):
        if (fd := found.descriptor) is not None:
            if fd in (1, 2):
                (sys.stdout if fd == 1 else sys.stderr).flush()
            _write_each(fd, data)
        elif kind == "through":
            _write_through(found, data)
        else:
            _replace(found, data)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _write_each(fd: int, pieces: Iterable[bytes]) -> None:
    for piece in pieces:
        _write_all(fd, piece)


def _write_through(found: Found, data: Iterable[bytes]) -> None:
    # No O_CREAT, no O_TRUNC: a device or a FIFO is written, never made into a file.
    flags = os.O_WRONLY | os.O_NOCTTY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(found.name, flags, dir_fd=found.dir_fd)
    try:
        fifo = stat.S_ISFIFO((st := os.fstat(fd)).st_mode)
        if not (stat.S_ISCHR(st.st_mode) or fifo) or (fifo and st.st_uid not in trusted_uids()):
            raise WriteError(f"cannot write {found.path}: it was replaced while being opened")
        _write_each(fd, data)
    finally:
        os.close(fd)


def _replace(found: Found, data: Iterable[bytes]) -> None:
    # Another user's file at the name is replaced by one of ours, never written through nor
    # given back to them: they must not be able to edit root's report or baseline afterwards.
    old = found.st if found.st is not None and found.st.st_uid in trusted_uids() else None
    dir_fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=found.dir_fd)
    try:
        with _temporary(dir_fd, found.name) as (fd, publish):
            _write_each(fd, data)
            if old is None:
                mask = os.umask(0o022)  # the only way to read the umask is to set it
                os.umask(mask)
                os.fchmod(fd, 0o666 & ~mask)
            else:
                if (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
                    with contextlib.suppress(PermissionError):  # only root can give files away
                        os.fchown(fd, old.st_uid, old.st_gid)
                os.fchmod(fd, stat.S_IMODE(old.st_mode))  # after fchown, which clears set-id
            os.fsync(fd)
            publish()
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@contextlib.contextmanager
def _temporary(dir_fd: int, name: str) -> Iterator[tuple[int, Callable[..., None]]]:
    """A new file beside NAME that nobody else created or can redirect, and what gives it
    NAME (replacing the old file at once). The file has no name until then (O_TMPFILE), so a
    kill, even SIGKILL, leaves nothing behind; where the file system cannot make such a file,
    it is named `.NAME.RANDOM.tmp` from the start and removed on any error."""
    tmp = f".{name[:200]}.{secrets.token_hex(4)}.tmp"
    fd, named = _unnamed(dir_fd), False
    if fd is None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd, named = os.open(tmp, flags, 0o600, dir_fd=dir_fd), True

    def publish(replace: bool = True) -> None:
        """Give the file NAME, replacing what is there (REPLACE) or failing with
        FileExistsError when anything is."""
        nonlocal named
        if not named:
            if not replace:  # link() never replaces: the file goes straight to NAME
                os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=dir_fd, follow_symlinks=True)
                return
            os.link(f"/proc/self/fd/{fd}", tmp, dst_dir_fd=dir_fd, follow_symlinks=True)
            named = True
        move = os.rename if replace else rename_noreplace
        move(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        named = False  # the name is NAME's now

    try:
        yield fd, publish
    finally:
        if named:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=dir_fd)
        os.close(fd)


def _unnamed(dir_fd: int) -> int | None:
    """An O_TMPFILE file in the directory, or None where that is not possible (the file
    system does not support it, or /proc, through which it is given a name, is missing)."""
    if not os.path.isdir("/proc/self/fd"):
        return None
    try:
        return os.open(".", os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    except OSError:  # EOPNOTSUPP, EISDIR (kernels before 3.11), ...
        return None


def rename_noreplace(src: str, dst: str, *, src_dir_fd: int | None, dst_dir_fd: int | None):
    """Rename SRC to DST, failing with FileExistsError when anything is at DST."""
    old, new = (_AT_FDCWD if fd is None else fd for fd in (src_dir_fd, dst_dir_fd))
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is not None:
        if renameat2(old, os.fsencode(src), new, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (0, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise OSError(err, os.strerror(err), dst)
    # The file system has no RENAME_NOREPLACE; link() never replaces either.
    os.link(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd, follow_symlinks=False)
    os.unlink(src, dir_fd=src_dir_fd)
