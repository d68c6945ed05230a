"""Files created exclusively (fix mode): new images, journals and private work directories,
complete or absent, never replacing anything."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from auditor.safefs.atomic import WriteError, _temporary, _write_all, rename_noreplace
from auditor.safefs.chase import chase


@dataclass(frozen=True)
class FileStamp:
    """What a file was when we made it: a later check tells it from anything put in its place."""

    device: int
    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileStamp:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@contextlib.contextmanager
def _directory_of(path: str) -> Iterator[tuple[int, str]]:
    """The directory that holds PATH, walked from / (see chase: nothing another user controls
    on the way), open for writing in it, and PATH's last component."""
    with chase(path, follow_last=False) as found:
        if found.descriptor is not None:
            raise WriteError(f"cannot create {path}: it names a descriptor")
        dir_fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=found.dir_fd)
    try:
        yield dir_fd, found.name
    finally:
        os.close(dir_fd)


def create_file(path: str, data: bytes, mode: int = 0o600) -> FileStamp:
    """A new file at PATH holding DATA, complete or absent; FileExistsError if PATH is taken."""
    with _directory_of(path) as (dir_fd, name):
        with _temporary(dir_fd, name) as (fd, publish):
            _write_all(fd, data)
            os.fchmod(fd, mode)
            os.fsync(fd)
            stamp = FileStamp.of(os.fstat(fd))
            publish(replace=False)
        os.fsync(dir_fd)
    return stamp


def append_file(path: str, data: bytes) -> None:
    """Append DATA to the existing file PATH (never through a symlink) and flush it."""
    with _directory_of(path) as (dir_fd, name):
        fd = os.open(name, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


class PrivateDir:
    """A directory only we can enter, for tools that create their output by name (qemu-img):
    nobody can plant a symlink inside it, and renaming it away does not redirect the tools,
    which reach it through our open descriptor."""

    def __init__(self, path: str):
        self.path = path
        with chase(path, follow_last=False) as found:
            self.name = found.name
            flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
            self.parent_fd = os.open(".", flags, dir_fd=found.dir_fd)
        try:
            os.mkdir(self.name, 0o700, dir_fd=self.parent_fd)  # fails on anything there
            flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
            self.fd = os.open(self.name, flags, dir_fd=self.parent_fd)
        except BaseException as exc:
            os.close(self.parent_fd)
            if isinstance(exc, FileExistsError):
                raise WriteError(f"cannot create {path}: something is already there") from None
            raise
        st = os.fstat(self.fd)
        self.inode = st.st_ino
        if st.st_uid != os.geteuid() or st.st_mode & 0o077:
            self.close()
            raise WriteError(f"cannot create {path}: it was replaced by another user's directory")

    def tool_path(self, name: str) -> str:
        """NAME inside this directory, as a path another process (a tool we run) can open."""
        return f"/proc/{os.getpid()}/fd/{self.fd}/{name}"

    def finish(self, name: str, final: str, *, like: os.stat_result) -> FileStamp:
        """Give NAME the owner and mode of LIKE, flush it and move it to FINAL beside this
        directory, replacing nothing."""
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.fd)
        try:
            with contextlib.suppress(PermissionError):
                os.fchown(fd, like.st_uid, like.st_gid)
            os.fchmod(fd, stat.S_IMODE(like.st_mode))
            os.fsync(fd)
            stamp = FileStamp.of(os.fstat(fd))
        finally:
            os.close(fd)
        try:
            rename_noreplace(name, final, src_dir_fd=self.fd, dst_dir_fd=self.parent_fd)
        except FileExistsError:
            raise WriteError(f"cannot create {final}: something is already there") from None
        os.fsync(self.parent_fd)
        return stamp

    def close(self) -> None:
        for entry in os.listdir(self.fd):
            os.unlink(entry, dir_fd=self.fd)
        with contextlib.suppress(FileNotFoundError):
            if os.lstat(self.name, dir_fd=self.parent_fd).st_ino == self.inode:
                os.rmdir(self.name, dir_fd=self.parent_fd)
        os.close(self.fd)
        os.close(self.parent_fd)

    def __enter__(self) -> PrivateDir:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()


def remove_private_dir(path: str) -> None:
    """Remove what a killed run left at PATH: our private directory and its files, or a plain
    file or symlink (never followed). Another user's directory is not ours to empty."""
    try:
        with _directory_of(path) as (parent, name):
            _remove_private_dir(path, parent, name)
    except FileNotFoundError:  # nothing there, not even its directory
        return


def _remove_private_dir(path: str, parent: int, name: str) -> None:
    try:
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(name, flags, dir_fd=parent)
    except FileNotFoundError:
        return
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):  # ELOOP: a symlink, not followed
            raise
        os.unlink(name, dir_fd=parent)
        return
    try:
        owner = os.fstat(fd).st_uid
        if owner != os.geteuid():
            raise WriteError(f"{path} belongs to uid {owner}: not removing it")
        for entry in os.listdir(fd):
            os.unlink(entry, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent)
