"""A host's snapshot metadata read from files instead of a daemon: libvirt's own directory
(`/var/lib/libvirt/qemu/snapshot/DOMAIN/SNAPSHOT.xml`, or a copy of it), optionally with
the domain definitions (`/etc/libvirt/qemu/DOMAIN.xml`). Files written by
`virsh snapshot-dumpxml` in the same layout work too; they just cannot say which snapshot
is current.

Everything here is untrusted: entries that are not regular files are never opened, and a
file that cannot be audited is recorded as skipped while the others are.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from auditor.inputs import InputError, check_xml_text, read_regular_file, shown_name
from auditor.model import Domain, Host, HostScan, Skipped
from auditor.safefs.chase import chase
from auditor.sources.offline.batches import WorkerLost, map_batches
from auditor.sources.xml.assemble import RawDomain, RawSnapshot, build_domain

# Domains per task of a worker process: enough to make a task's overhead (a few ms) small,
# few enough that both CPUs get work on a tree of a few hundred domains.
BATCH = 32
_UUID = re.compile(rb"<uuid>\s*([0-9a-fA-F-]{32,36})\s*</uuid>")


class NotMetadataError(ValueError):
    """The path is not a metadata directory."""


def is_metadata_dir(path: Path) -> bool:
    """A directory of per-domain directories (or an empty one), not a directory of XML
    files (that is one domain's directory, or the domain definitions)."""
    try:
        if os.path.islink(path) or not os.path.isdir(path):
            return False
        with os.scandir(path) as entries:
            for entry in entries:
                if entry.name.endswith(".xml") and entry.is_file(follow_symlinks=False):
                    return False
    except OSError:  # not listable: not one to audit (a directory given is read as one)
        return False
    return True


def scan_metadata_dir(
    root: Path,
    domain_xml: Path | None = None,
    host_name: str | None = None,
    check: Callable[[Domain], object] | None = None,
    checked: dict | None = None,
    timeout: float | None = None,
) -> HostScan:
    """The host ROOT describes. CHECK, when given, is called on each domain as soon as it is
    built (in whichever process built it); what it returns goes into CHECKED by (name, uuid),
    so that a domain is audited while its files' contents are still at hand, and dropped.
    Not read within TIMEOUT seconds, the host is that error."""
    deadline = None if timeout is None else time.monotonic() + timeout
    if not is_metadata_dir(root):
        raise NotMetadataError(f"{root}: not a snapshot metadata directory (DOMAIN/NAME.xml)")
    uri = host_name or shown_name(os.path.abspath(root))
    skipped: list[Skipped] = []
    with _Dir.open(root) as top:
        definitions = {}
        if domain_xml:
            with _Dir.open(domain_xml) as defs:
                definitions = _definitions(defs, uri, skipped)
        return _scan(top, definitions, uri, skipped, check, checked, timeout, deadline)


def _scan(
    top: _Dir,
    definitions: dict[str, bytes],
    uri: str,
    skipped: list[Skipped],
    check: Callable[[Domain], object] | None,
    checked: dict | None,
    timeout: float | None,
    deadline: float | None,
) -> HostScan:
    domains: list[Domain] = []
    names = set()
    directories = []
    for entry in top.entries():
        if not _utf8(entry.name) or not entry.is_dir(follow_symlinks=False):
            reason = f"{shown_name(top.path_of(entry))}: {_not_dir(entry)}"
            skipped.append(Skipped(uri, shown_name(entry.name), None, reason))
            continue
        names.add(entry.name)
        directories.append(entry)

    def built(raw: RawDomain, missed: list[Skipped]) -> tuple:
        domain, unparsed = build_domain(uri, raw)
        return domain, missed + unparsed, None if check is None or domain is None else check(domain)

    def work(start: int, stop: int) -> list[tuple]:
        results = []
        for entry in directories[start:stop]:
            missed: list[Skipped] = []
            raw = _raw_domain(top, entry, definitions.get(entry.name), uri, missed)
            results.append(built(raw, missed))
        return results

    # Each domain's file contents are dropped once it is built (and checked).
    found = []
    try:
        with contextlib.closing(map_batches(work, len(directories), BATCH)) as results:
            for item in results:
                found.append(item)
                if deadline is not None and time.monotonic() > deadline:
                    return HostScan(Host(uri=uri, error=f"timed out after {timeout:g} s"))
    except WorkerLost as exc:  # the host is not audited, and the report says why (exit 3)
        return HostScan(Host(uri=uri, error=str(exc)))
    for name, definition in definitions.items():  # domains without snapshots
        if name not in names:
            found.append(built(RawDomain(name, _uuid(definition), definition, ()), []))
    for domain, missed, result in found:
        skipped.extend(missed)
        if domain is not None:
            domains.append(domain)
            if checked is not None and check is not None:
                checked[domain.name, domain.uuid] = result
    domains.sort(key=lambda d: (d.name, d.uuid))
    skipped.sort(key=lambda s: (s.domain or "", s.snapshot or "", s.reason))
    return HostScan(Host(uri=uri), tuple(domains), tuple(skipped))


def _raw_domain(
    top: _Dir, entry: os.DirEntry, definition: bytes | None, uri: str, skipped
) -> RawDomain:
    snapshots = []
    uuid = _uuid(definition) if definition else ""
    shown = top.path_of(entry)
    try:
        # Opened by its descriptor, not by path: swapped for a link since it was listed, it
        # is refused (ELOOP, ENOTDIR), never followed.
        with _Dir.open_in(top, entry.name, shown) as directory:
            listed = [(e, _read_xml(directory, e)) for e in directory.entries()]
    except OSError as exc:  # unreadable, gone since the parent was listed, or swapped
        skipped.append(Skipped(uri, entry.name, None, f"{shown}: cannot list: {exc.strerror}"))
        listed = []
    for item, data in listed:
        if data is None:
            continue  # libvirt keeps nothing but XML here; editors' backups are not metadata
        name = item.name[: -len(".xml")]
        if isinstance(data, InputError):
            path = shown_name(os.path.join(shown, item.name))
            skipped.append(Skipped(uri, entry.name, shown_name(name), f"{path}: {data}"))
            continue
        uuid = uuid or _uuid(data)
        snapshots.append(RawSnapshot(name, data, None))
    return RawDomain(entry.name, uuid, definition, tuple(snapshots))


def _definitions(directory: _Dir, uri: str, skipped: list[Skipped]) -> dict[str, bytes]:
    found = {}
    for item in directory.entries():
        data = _read_xml(directory, item)
        if data is None:
            continue
        name = item.name[: -len(".xml")]
        if isinstance(data, InputError):
            path = shown_name(os.path.join(directory.path, item.name))
            skipped.append(Skipped(uri, shown_name(name), None, f"{path}: {data}"))
            continue
        found[name] = data
    return found


def _read_xml(directory: _Dir, item: os.DirEntry) -> bytes | InputError | None:
    """A metadata file's bytes (a UTF-8 name, a regular file, XML without DTDs), or why not;
    None for what is not named *.xml."""
    if not item.name.endswith(".xml"):
        return None
    if not _utf8(item.name):
        return InputError(_NOT_UTF8)
    try:
        data = read_regular_file(item.name, dir_fd=directory.fd)
        check_xml_text(data)
    except InputError as exc:
        return exc
    return data


@dataclass(frozen=True)
class _Dir:
    """A directory open by descriptor, and its path as messages show it."""

    fd: int
    path: str

    @classmethod
    @contextlib.contextmanager
    def open(cls, path: Path) -> Iterator[_Dir]:
        """PATH, reached through no symlink another user owns (see safefs.chase)."""
        with chase(str(path), directories=False) as found:
            fd = os.open(found.name, _DIRECTORY, dir_fd=found.dir_fd)
        try:
            yield cls(fd, str(path))
        finally:
            os.close(fd)

    @classmethod
    @contextlib.contextmanager
    def open_in(cls, parent: _Dir, name: str, shown: str) -> Iterator[_Dir]:
        fd = os.open(name, _DIRECTORY, dir_fd=parent.fd)
        try:
            yield cls(fd, shown)
        finally:
            os.close(fd)

    def entries(self) -> list[os.DirEntry]:
        with os.scandir(self.fd) as entries:
            return sorted(entries, key=lambda e: e.name)

    def path_of(self, entry: os.DirEntry) -> str:
        return os.path.join(self.path, entry.name)


_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _uuid(data: bytes | None) -> str:
    match = _UUID.search(data or b"")
    return match.group(1).decode().lower() if match else ""


# A name that is not UTF-8 cannot be a domain or snapshot name: no report could write it.
_NOT_UTF8 = "the name is not UTF-8: not read"


def _utf8(name: str) -> bool:
    return name.isascii() or shown_name(name) == name  # ASCII: the common case, at a glance


def _not_dir(entry: os.DirEntry) -> str:
    if not _utf8(entry.name):
        return _NOT_UTF8
    if entry.is_symlink():
        return "is a symbolic link: not followed"
    return "is not a directory"
