"""Facts about the files that snapshot metadata names: existence, size, backing chains and
internal snapshots. Only for hosts whose files this process can see.

Images are read with `qemu-img info -U` (force share): never opened for writing, and readable
while a running VM holds them.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from auditor.model import FileFacts
from auditor.sources import qcow2, qemu
from auditor.sources.qemu import QemuToolError

QEMU_IMG_TIMEOUT = 60
WORKERS = 8
# Connections whose files are this machine's files: no host name and no remote transport.
_LOCAL_TRANSPORTS = {"", "unix"}
_LOCAL_DRIVERS = {"qemu"}


def files_visible(uri: str | None) -> bool:
    """True for local QEMU connections (qemu:///system, qemu:///session, qemu:///embed...,
    qemu+unix:///...); false for remote hosts and the test driver (whose paths are made up)."""
    if not uri:
        return False
    parts = urlsplit(uri)
    driver, _, transport = parts.scheme.partition("+")
    return driver in _LOCAL_DRIVERS and transport in _LOCAL_TRANSPORTS and not parts.hostname


def gather(images: Iterable[str], plain: Iterable[str] = ()) -> dict[str, FileFacts]:
    """Facts for every image (and each image of its backing chain) and every plain file."""
    facts: dict[str, FileFacts] = {}
    for path in set(plain):
        facts[path] = plain_file(path)
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        for found in pool.map(image_chain, sorted(set(images))):
            for item in found:
                facts.setdefault(item.path, item)
    return facts


def plain_file(path: str) -> FileFacts:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return FileFacts(path, exists=False)
    except OSError as exc:
        return FileFacts(path, exists=True, error=exc.strerror)
    return FileFacts(path, exists=True, size=stat.st_blocks * 512)


def image_chain(path: str) -> list[FileFacts]:
    """Facts for PATH and for each image below it; a chain that cannot be opened is recorded
    as an error on PATH, with what the top image alone says."""
    if not os.path.lexists(path):
        return [FileFacts(path, exists=False)]
    try:
        chain = qemu.img_info(path, force_share=True, chain=True, timeout=QEMU_IMG_TIMEOUT)
    except QemuToolError as exc:
        try:
            top = qemu.img_info(path, force_share=True, timeout=QEMU_IMG_TIMEOUT)
        except QemuToolError:
            return [FileFacts(path, exists=True, error=str(exc))]
        return [_facts(path, top, (), error=str(exc))]
    names = [path] + [_backing_path(entry) for entry in chain[:-1]]
    return [
        _facts(name, entry, tuple(names[i + 1 :]))
        for i, (name, entry) in enumerate(zip(names, chain, strict=True))
    ]


def _facts(path: str, entry: dict, backing: tuple[str, ...], error: str | None = None) -> FileFacts:
    return FileFacts(
        path=path,
        exists=True,
        size=entry.get("actual-size"),
        format=entry.get("format"),
        backing_chain=backing,
        internal_snapshots=tuple(s["name"] for s in entry.get("snapshots", ())),
        error=error,
    )


def _backing_path(entry: dict) -> str:
    # qemu-img records backing files as written; full-backing-filename resolves relative ones.
    name = entry.get("full-backing-filename") or entry.get("backing-filename") or ""
    return os.path.normpath(name) if name.startswith("/") else name


# What fix mode leaves while it writes an image: never an orphan.
_UNFINISHED = ".part"


def unreferenced_images(directories: Iterable[str], referenced: set[str]) -> dict[str, FileFacts]:
    """qcow2 images in DIRECTORIES (each listed once) that are not in REFERENCED, with their
    backing chains. Only regular files are opened (lstat first, then O_NOFOLLOW|O_NONBLOCK,
    so a symlink is not followed and a FIFO cannot block), and only their headers are read."""
    found: dict[str, FileFacts] = {}
    known = referenced | {os.path.realpath(p) for p in referenced}
    for directory in sorted(set(directories)):
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        for name in names:
            path = os.path.join(directory, name)
            if name.endswith(_UNFINISHED) or path in known:
                continue
            facts = _unreferenced(path)
            if facts is not None and os.path.realpath(path) not in known:
                found[path] = facts
    return found


def _unreferenced(path: str) -> FileFacts | None:
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        qcow2.read_header(fd, path)
    except (OSError, qcow2.Qcow2Error):
        return None
    finally:
        os.close(fd)
    return FileFacts(
        path,
        exists=True,
        size=info.st_size,  # a file's own size: what removing it frees, near enough
        format="qcow2",
        backing_chain=tuple(qcow2.backing_chain(path)),
        unreferenced=True,
    )
