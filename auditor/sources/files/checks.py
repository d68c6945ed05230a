"""Facts about the files that snapshot metadata names: existence, size, backing chains and
internal snapshots. Only for hosts whose files this process can see.

qcow2 headers (and raw images a backing format names) are read natively, each image once
however many overlays share it: a chain of n snapshots costs n header reads, not n² image
opens in n processes. Other formats, and chains the native reader cannot follow to the end,
are read with `qemu-img info -U` (force share): never opened for writing, readable while a
running VM holds them, and failing with the error messages operators know.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from auditor.images import qcow2, qemu
from auditor.images.qemu import QemuToolError
from auditor.model import Domain, FileFacts, FileFactsMap, HostScan, Skipped
from auditor.sources.files.orphans import unreferenced_images

QEMU_IMG_TIMEOUT = 60
_MAX_CHAIN = 1000  # longer chains are left to qemu-img, which has limits of its own
WORKERS = 8
# Headers are read in one thread, unless the first _PROBE images took over _SLOW_READ seconds
# each on average (a local file system answers in microseconds; network storage does not).
_PROBE, _SLOW_READ = 32, 0.0005
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
    headers = _Headers()
    rest = []  # images qemu-img reads
    paths = sorted(set(images))
    for index, path in enumerate(paths):
        if index == _PROBE and headers.slow():
            headers.prefetch(paths[index:])
        found = headers.chain(path)
        if found is None:
            rest.append(path)
        for item in found or ():
            kept = facts.get(item.path)
            if kept is item:
                break  # kept with the rest of its chain already: shared chains cost O(n)
            if kept is None:
                facts[item.path] = item
    for chain in headers.qemu_chains(rest):
        for item in chain:
            facts.setdefault(item.path, item)
    return facts


class _Headers:
    """Native header reads, each image once; None where qemu-img must read it."""

    def __init__(self) -> None:
        self._read: dict[tuple[str, str], qcow2.ImageHeader | None] = {}
        self._qemu: dict[str, list[FileFacts]] = {}
        self._chains: dict[tuple[str, str], tuple[FileFacts, ...]] = {}
        self._seconds = 0.0  # spent in header reads

    def qemu_chains(self, paths: list[str]) -> list[list[FileFacts]]:
        """`image_chain` of each path, each path once however often it is asked for."""
        todo = [p for p in paths if p not in self._qemu]
        if len(todo) == 1:
            self._qemu[todo[0]] = image_chain(todo[0])
        elif todo:
            with ThreadPoolExecutor(max_workers=WORKERS) as pool:
                self._qemu.update(zip(todo, pool.map(image_chain, todo), strict=True))
        return [self._qemu[p] for p in paths]

    def header(self, path: str, fmt: str | None) -> qcow2.ImageHeader | None:
        key = (path, fmt or "qcow2")  # qcow2 probed or named: one read
        if key not in self._read:
            start = time.monotonic()
            try:
                self._read[key] = qcow2.read_header(path, fmt)
            except (OSError, qcow2.Qcow2Error):
                self._read[key] = None
            self._seconds += time.monotonic() - start
        return self._read[key]

    def slow(self) -> bool:
        """Whether the reads so far waited for the storage (NFS...) rather than the cache."""
        return self._seconds > len(self._read) * _SLOW_READ

    def prefetch(self, paths: list[str]) -> None:
        """Read the headers of PATHS, several at once: on storage that makes each read wait,
        the waits overlap. (Where reads do not wait, threads only contend for the GIL.)"""
        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            list(pool.map(lambda path: self.header(path, None), paths))

    def chain(self, path: str) -> tuple[FileFacts, ...] | None:
        """Facts for PATH and each image below it, or None when any image of the chain is
        not read natively (then qemu-img reads the whole chain, and words any error). The
        rest of a chain already read from another overlay is reused, not walked again."""
        if cached := self._chains.get((path, "qcow2")):
            return cached
        found = self.header(path, None)
        # Whether a path exists is asked only when it could not be read: one open, no lstat.
        if found is None and (missing := _missing(path)) is not None:
            return (missing,)
        if found is None and (kind := file_type(path)) not in _IMAGE_KINDS:
            return (FileFacts(path, exists=True, file_type=kind),)
        names, fmts = [path], ["qcow2"]
        headers: list[qcow2.ImageHeader] = []
        known: tuple[FileFacts, ...] = ()  # the chain from an image below on, read before
        while True:
            if found is None and len(names) > 1 and (kind := _not_an_image(names[-1])):
                top = headers[0]
                return (
                    FileFacts(
                        path,
                        exists=True,
                        size=top.allocated,
                        format=top.format,
                        internal_snapshots=top.snapshots,
                        error=f"backing file {names[-1]} is {kind}, not an image",
                        file_type="file",
                    ),
                )
            if found is None or len(names) > _MAX_CHAIN:
                return None
            headers.append(found)
            if found.backing_file is None:
                break
            below = qcow2.backing_path(names[-1], found.backing_file)
            if below in names:
                return None  # a loop: qemu-img refuses it in its own words
            fmt = found.backing_format or "qcow2"
            if known := self._chains.get((below, fmt), ()):
                rest = known[0].backing_chain
                if len(names) + 1 + len(rest) > _MAX_CHAIN or not set(names).isdisjoint(rest):
                    return None  # too long, or a loop: qemu-img words it
                break
            names.append(below)
            fmts.append(fmt)
            found = self.header(below, found.backing_format)
        # Built from the bottom up: each image's facts and chain end in those of the image
        # below it, and each is kept for any other overlay on it.
        facts, backing = known, (known[0].path, *known[0].backing_chain) if known else ()
        for name, header, fmt in zip(
            reversed(names), reversed(headers), reversed(fmts), strict=True
        ):
            item = FileFacts(
                name,
                exists=True,
                size=header.allocated,
                format=header.format,
                backing_chain=backing,
                internal_snapshots=header.snapshots,
                # Read natively: a regular file (fstat'ed when opened, following links).
                file_type="file" if name.startswith("/") else None,
            )
            facts, backing = (item, *facts), (name, *backing)
            self._chains.setdefault((name, fmt), facts)
        return facts


def _not_an_image(path: str) -> str | None:
    """What PATH is when it is something qemu-img would block on or refuse (a FIFO, a socket,
    a directory, a character device), else None. Block devices can hold images."""
    kind = file_type(path)
    return None if kind in _IMAGE_KINDS else _NAMES.get(kind, f"a {kind}")


_IMAGE_KINDS = (None, "file", "block")  # None: cannot be stat'ed, qemu-img words why
_NAMES = {"char": "a character device", "fifo": "a FIFO", "socket": "a socket"}


def _missing(path: str) -> FileFacts | None:
    """The facts of PATH when it is missing, or cannot even be looked at (a directory on the
    way that we may not search: whether it exists is unknown, and said); else None."""
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return FileFacts(path, exists=False)
    except OSError as exc:
        return FileFacts(path, exists=True, error=f"cannot be reached: {exc.strerror}")
    return None


def plain_file(path: str) -> FileFacts:
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return FileFacts(path, exists=False)
    except OSError as exc:
        return FileFacts(path, exists=True, error=exc.strerror)
    return FileFacts(path, exists=True, size=found.st_blocks * 512, file_type=_kind(found))


def file_type(path: str) -> str | None:
    """What PATH is, following links (a logical volume is a link to a block device):
    file, block, char, directory, fifo or socket; None when it cannot be stat'ed."""
    try:
        return _kind(os.stat(path))
    except OSError:
        return None


_KINDS = (
    (stat.S_ISREG, "file"),
    (stat.S_ISBLK, "block"),
    (stat.S_ISCHR, "char"),
    (stat.S_ISDIR, "directory"),
    (stat.S_ISFIFO, "fifo"),
    (stat.S_ISSOCK, "socket"),
)


def _kind(found: os.stat_result) -> str | None:
    return next((name for test, name in _KINDS if test(found.st_mode)), None)


def image_chain(path: str) -> list[FileFacts]:
    """Facts for PATH and for each image below it; a chain that cannot be opened is recorded
    as an error on PATH, with what the top image alone says."""
    if (missing := _missing(path)) is not None:
        return [missing]
    try:
        chain = qemu.img_info(path, force_share=True, chain=True, timeout=QEMU_IMG_TIMEOUT)
    except QemuToolError as exc:
        try:
            top = qemu.img_info(path, force_share=True, timeout=QEMU_IMG_TIMEOUT)
        except QemuToolError:
            return [FileFacts(path, exists=True, error=str(exc), file_type=file_type(path))]
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
        # A relative backing name is relative to its image, not to this process.
        file_type=file_type(path) if path.startswith("/") else None,
    )


def _backing_path(entry: dict) -> str:
    # qemu-img records backing files as written; full-backing-filename resolves relative ones.
    name = entry.get("full-backing-filename") or entry.get("backing-filename") or ""
    return os.path.normpath(name) if name.startswith("/") else name


def gather_files(domains: Iterable[Domain]) -> FileFactsMap:
    """Facts about every local file the domains and their snapshots name (images with their
    backing chains; a path also named as a plain file is described as one), and the images
    beside them that no domain names (SNAP018): known only once every domain of the host is.
    After the scan, in one thread: in the scan's threads each of the four system calls an
    image costs would wait for the GIL behind the parsing, and took three times as long
    (several threads only where the storage makes each read wait: see `gather`)."""
    images: set[str] = set()
    plain: set[str] = set()
    reverts: set[str] = set()
    for domain in domains:
        images.update(s.path for s in domain.disk_sources() if s.type == "file" and s.path)
        plain.update(s.memory_file for s in domain.snapshots if s.memory_file)
        # libvirt names the overlays it made reverting to a snapshot with children, too.
        reverts.update(p for s in domain.snapshots for p in s.revert_overlays)
    images = {p for p in images if p.startswith("/")}
    plain = {p for p in plain if p.startswith("/")}
    facts = gather(images, plain)
    merged = FileFactsMap((p, facts[p]) for p in plain)
    named = (facts.keys() - plain) | (images & plain)  # the images, and the chains below
    merged.update((p, facts[p]) for p in sorted(named - plain))
    directories = {os.path.dirname(p) for p in named if p.startswith("/")}
    referenced = set(merged) | {p for f in merged.values() for p in f.backing_chain} | reverts
    merged.update(unreferenced_images(directories, referenced))
    return merged


def not_read(scan: HostScan) -> list[Skipped]:
    """A skipped item for each file the host's rules needed and could not read (an image
    that exists but could not be opened, a file behind a directory we may not search, a
    directory of images that could not be listed): without it a gate would pass on an image
    whose internal snapshots nobody saw."""
    if not scan.files:
        return []
    owners: dict[str, str] = {}
    for domain in scan.domains:
        for source in domain.disk_sources():
            if source.path:
                owners.setdefault(source.path, domain.name)
    items = []
    for path, facts in scan.files.items():
        if facts.exists and facts.error and facts.format is None and facts.file_type in _READ:
            what = _WHAT.get(facts.file_type, "image")
            reason = f"{what} {path} could not be read: {facts.error}"
            items.append(Skipped(scan.host.uri, owners.get(path), None, reason))
    return items


_READ = ("file", "block", "directory", None)  # None: it could not even be stat'ed
_WHAT = {"directory": "directory", None: "file"}
