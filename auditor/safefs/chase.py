"""Paths walked one component at a time from /, trusting only what root or the invoking user
controls: systemd's chase() for the walk, OpenSSH's safe_path() for the trust.

Each directory is opened with O_NOFOLLOW relative to the one before it and checked on its
descriptor (fstat), so a rename or symlink swapped in by another user during the walk is
either refused or never seen; what is then written or read goes through the last descriptor,
never through the path again. A directory is trusted when root or the invoking user owns it
and nobody else may write to it; in a sticky directory that others may write to (/tmp), only
entries root or the invoking user owns are. A symlink is followed only when its owner is
trusted and it sits in a trusted directory. openat2's RESOLVE_NO_SYMLINKS is not used: it
refuses every symlink, also root's own (/var/run), where this walk follows trusted ones.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass

MAX_LINKS = 40  # as many symlinks as the kernel follows in one path
_WALK = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FD_PATH = re.compile(r"^/(?:dev/fd/(\d+)|proc/self/fd/(\d+)|dev/(stdout|stderr))$")


class Untrusted(OSError):
    """A path that leads through something another user controls; the message is one line
    that names it (and never shows what the file holds)."""


def trusted_uids() -> frozenset[int]:
    """Root and the invoking user (under sudo, the user who ran sudo too)."""
    uids = {0, os.getuid(), os.geteuid()}
    sudo = os.environ.get("SUDO_UID", "")
    if os.geteuid() == 0 and sudo.isdigit():
        uids.add(int(sudo))
    return frozenset(uids)


def directory_problem(
    path: str, owner: int, mode: int, trusted: frozenset[int], *, sticky: bool = True
) -> str | None:
    """Why another user could swap entries of directory PATH under us, or None. With STICKY,
    a sticky directory open to others (/tmp) is not refused here: its entries are checked
    instead (a walk goes on only into entries of ours)."""
    if mode & (stat.S_IWGRP | stat.S_IWOTH) and not (sticky and mode & stat.S_ISVTX):
        who = "every user" if mode & stat.S_IWOTH else "its group"
        return f"{path} is writable by {who} (mode {stat.S_IMODE(mode):04o})"
    if owner not in trusted:
        return not_ours(path, owner)
    return None


@dataclass(frozen=True)
class Found:
    """Where a path leads: its last component NAME in the directory open as DIR_FD (O_PATH),
    and what is there now (lstat), None when nothing is."""

    dir_fd: int
    directory: str  # the directory's path, as walked (for messages)
    name: str
    st: os.stat_result | None
    followed: bool  # whether a symlink was followed on the way
    # The descriptor the path names instead (/dev/stdout, /dev/fd/N, /proc/self/fd/N, or a
    # trusted link to one): the caller's own, used as it is; DIR_FD is then -1.
    descriptor: int | None = None

    @property
    def path(self) -> str:
        return os.path.join(self.directory, self.name)


@contextlib.contextmanager
def chase(
    path: str,
    trusted: frozenset[int] | None = None,
    *,
    directories: bool = True,
    follow_last: bool = True,
) -> Iterator[Found]:
    """Walk PATH (relative paths from the working directory's path, itself walked from /)
    to the directory holding its last component; a trusted symlink there is followed too.
    Without DIRECTORIES, directories are not required to be trusted (reading a file another
    user gave us through their directory is safe: nothing is followed there but trusted
    symlinks). Without FOLLOW_LAST, a symlink as the last component is where the walk ends
    (for what must never be created or removed through one). Raises Untrusted, or OSError for
    a component that is missing or not a directory."""
    trusted = trusted_uids() if trusted is None else trusted
    fds: list[int] = []
    try:
        found = _walk(os.path.abspath(path), trusted, fds, directories, follow_last)
        yield found
    finally:
        for fd in fds:
            os.close(fd)


def _walk(
    path: str, trusted: frozenset[int], fds: list[int], directories: bool, follow_last: bool
) -> Found:
    # The walk's state: a stack of open directories (fds, root first) and their paths, and
    # the components still to go. A symlink puts its target's components in front.
    if (number := descriptor(path)) is not None:
        return Found(-1, "", path, None, False, number)
    todo = _components(path)
    names: list[str] = []
    # Whether each open directory is trusted: a symlink is followed only in one that is.
    safe = [_open_root(fds, trusted, directories)]
    links = 0
    while True:
        if not todo:  # the path was "/" itself, or ended in ".."
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), "/" + "/".join(names))
        name = todo.pop(0)
        if name == "..":
            if len(fds) > 1:
                os.close(fds.pop())
                names.pop()
                safe.pop()
            continue
        parent_fd, parent = fds[-1], "/" + "/".join(names)
        try:
            st: os.stat_result | None = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if st is not None and stat.S_ISLNK(st.st_mode) and (todo or follow_last):
            links += 1
            if links > MAX_LINKS:
                raise Untrusted(f"{path}: too many levels of symlinks")
            where = os.path.join(parent, name)
            if st.st_uid not in trusted:
                raise Untrusted(not_ours(f"symlink {where}", st.st_uid))
            if not safe[-1]:
                raise Untrusted(f"symlink {where} is in a directory another user controls")
            target = os.readlink(name, dir_fd=parent_fd)
            leads_to = os.path.join(parent, target, *todo)
            if (number := descriptor(leads_to)) is not None:
                return Found(-1, "", leads_to, None, True, number)
            if target.startswith("/"):
                while len(fds) > 1:
                    os.close(fds.pop())
                    safe.pop()
                names.clear()
            todo[:0] = _components(target)
            continue
        if not todo:
            return Found(parent_fd, parent, name, st, links > 0)
        if st is None:
            where = os.path.join(parent, name)
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), where)
        fd = os.open(name, _WALK, dir_fd=parent_fd)  # ELOOP/ENOTDIR if swapped since
        fds.append(fd)
        names.append(name)
        dir_st = os.fstat(fd)
        where = "/" + "/".join(names)
        problem = directory_problem(where, dir_st.st_uid, dir_st.st_mode, trusted)
        if problem and directories:
            raise Untrusted(problem)
        safe.append(problem is None)


def not_ours(what: str, owner: int) -> str:
    """The one way a refusal says who owns WHAT."""
    return f"{what} belongs to uid {owner}, neither root nor the invoking user"


def descriptor(path: str) -> int | None:
    """The descriptor PATH names (/dev/stdout, /dev/stderr, /dev/fd/N, /proc/self/fd/N), or
    None. Those are links the kernel makes to whatever the descriptor is (a pipe, a
    terminal): not walked, used as they are."""
    match = _FD_PATH.match(os.path.normpath(path))
    if not match:
        return None
    number, other, name = match.groups()
    return int(number or other) if (number or other) else (1 if name == "stdout" else 2)


def _components(path: str) -> list[str]:
    return [part for part in path.split("/") if part not in ("", ".")]


def _open_root(fds: list[int], trusted: frozenset[int], directories: bool) -> bool:
    """Open / onto FDS; whether it is trusted."""
    fd = os.open("/", _WALK)
    fds.append(fd)
    st = os.fstat(fd)
    problem = directory_problem("/", st.st_uid, st.st_mode, trusted)
    if problem and directories:
        raise Untrusted(problem)
    return problem is None
