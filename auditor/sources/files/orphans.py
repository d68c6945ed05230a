"""Images beside a host's images that no domain names (what SNAP018 reports): each directory
listed once, only regular files opened, only their headers read."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable

from auditor.images import qcow2
from auditor.model import FileFacts

_UNFINISHED = ".part"  # what fix mode leaves while it writes an image: never an orphan


def unreferenced_images(directories: Iterable[str], referenced: set[str]) -> dict[str, FileFacts]:
    """qcow2 images in DIRECTORIES (each listed once) that are not in REFERENCED, with their
    backing chains. Only regular files are opened (lstat first, then O_NOFOLLOW|O_NONBLOCK,
    so a symlink is not followed and a FIFO cannot block), and only their headers are read."""
    found: dict[str, FileFacts] = {}
    aliases: _Aliases | None = None  # made only if a candidate is left
    for directory in sorted(set(directories)):
        try:
            names = sorted(os.listdir(directory))
        except FileNotFoundError:
            continue
        except OSError as exc:  # said, not passed over: an orphan there would go unseen
            found[directory] = FileFacts(
                directory, exists=True, error=f"cannot list: {exc.strerror}", file_type="directory"
            )
            continue
        for name in names:
            path = os.path.join(directory, name)
            if name.endswith(_UNFINISHED) or path in referenced:
                continue
            try:
                info = os.lstat(path)
            except OSError:
                continue
            if not stat.S_ISREG(info.st_mode):
                continue
            aliases = aliases or _Aliases(referenced)
            if not aliases.named(path, info) and (facts := _unreferenced(path)) is not None:
                found[path] = facts
    return found


class _Aliases:
    """Whether a file is one of REFERENCED under another name (a name reached through a
    symlink). The same real path means the same file: real paths (an lstat per path
    component, for every referenced path) are worked out only for a file whose device and
    inode are those of a referenced file (one stat each), and for names that do not stat."""

    def __init__(self, referenced: set[str]) -> None:
        self.referenced, self.files, unknown = referenced, set(), set()
        for path in referenced:
            try:
                found = os.stat(path)
                self.files.add((found.st_dev, found.st_ino))
            except OSError:
                unknown.add(path)
        self.unknown = unknown | {os.path.realpath(p) for p in unknown}
        self.resolved: set[str] | None = None

    def named(self, path: str, info: os.stat_result) -> bool:
        if (info.st_dev, info.st_ino) in self.files:
            if self.resolved is None:
                self.resolved = self.referenced | {os.path.realpath(p) for p in self.referenced}
            names = self.resolved
        else:
            names = self.unknown
        return path in names or os.path.realpath(path) in names


def _unreferenced(path: str) -> FileFacts | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except (FileNotFoundError, IsADirectoryError):
        return None
    except OSError as exc:  # unreadable: it may be an orphan as well as anything else
        return FileFacts(path, exists=True, error=exc.strerror, unreferenced=True, file_type="file")
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        header = qcow2.read_open(fd, path, info)
    except (OSError, qcow2.Qcow2Error):
        return None
    finally:
        os.close(fd)
    return FileFacts(
        path,
        exists=True,
        size=info.st_size,  # a file's own size: what removing it frees, near enough
        format="qcow2",
        backing_chain=tuple(qcow2.backing_chain(path, header=header)),
        unreferenced=True,
    )
