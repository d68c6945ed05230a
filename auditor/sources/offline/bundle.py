"""Bundles: one host's facts in one portable file, written by `snapaudit collect` and
audited anywhere later by `snapaudit scan --from`, under whatever policy applies then.

A bundle is a gzip'd tar holding JSON and the XML libvirt returned, never parsed verdicts:

    manifest.json                 format, tool, host identity, when it was collected
    capabilities.xml              the host's capabilities (HOST001 reads them)
    domains/N/domain.xml          the domain's definition (fetched without secrets)
    domains/N/snapshots/M.xml     each snapshot's XML (fetched without secrets)
    domains/N/index.json          name, UUID, and the snapshots with which one is current
    volumes.json                  the storage volumes disks name, as the host resolved them
    files.json                    file facts, when file checks ran at collection
    skipped.json                  what could not be read at collection

A bundle is untrusted when read: it is never extracted; members with absolute paths, `..`,
links or devices are refused, and member count and sizes are bounded.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import tarfile
import time
import zlib
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from auditor import __version__
from auditor.inputs import MAX_FILE_BYTES, open_regular_input
from auditor.model import FileFacts, Host, HostScan, Skipped
from auditor.sources.offline.bundle_records import (
    FORMAT,
    HOST_FIELDS,
    BundleError,
    json_load,
    read_domain,
    read_files,
    read_manifest,
    read_skipped,
    read_volumes,
)
from auditor.sources.xml.assemble import (
    RawHost,
    build_domain,
    external_snapshot_revert,
)
from auditor.sources.xml.disk_source import Volume, recorded_resolver

MAX_MEMBERS = 500_000  # 100,000 snapshots' XML is a fifth of it
# What may wait in memory for its domain's index.json (written right after the domain's XML).
MAX_PENDING_BYTES = 256 * 1024 * 1024
MAX_TOTAL_BYTES = 4 * 1024**3
_MEMBER_NAME = re.compile(
    r"^(manifest\.json|capabilities\.xml|volumes\.json|files\.json|skipped\.json|"
    r"domains/\d+/(domain\.xml|index\.json|snapshots/\d+\.xml))$"
)


class _ExtendedHeader(tarfile.TarError):
    """A member header that tarfile would parse before our checks see the member."""


class _PlainMember(tarfile.TarInfo):
    """Refuses extended headers (pax, GNU long names) and sparse members as tarfile meets
    them: `collect` writes none, and tarfile reads each one whole before returning a member
    (a 17 KB bundle that inflates to one huge pax header takes minutes of CPU in its regular
    expressions), follows a chain of them by recursion (a traceback), and reads sparse maps
    without bound."""

    def _proc_member(self, tar):
        if self.type in _EXTENDED_TYPES:
            raise _ExtendedHeader(f"an extended or sparse header at byte {self.offset}: refused")
        if self.size < 0:  # tarfile reads "-777" in octal as well as in base-256
            raise _ExtendedHeader(f"a negative member size at byte {self.offset}: refused")
        return super()._proc_member(tar)  # type: ignore[misc]  # private: not in typeshed

    @classmethod
    def frombuf(cls, buf, encoding, errors):
        # A size in base-256 is negative (tarfile then reads the next header from an earlier
        # offset: a loop, or a byte budget counted down) or over 8 GiB: never a bundle's.
        if len(buf) == tarfile.BLOCKSIZE and buf[124] in (0x80, 0xFF):
            raise _ExtendedHeader("a member size in base-256: refused")
        return super().frombuf(buf, encoding, errors)


_EXTENDED_TYPES = (
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
    tarfile.GNUTYPE_SPARSE,
)


def write_bundle(fileobj, raw: RawHost, files: Mapping[str, FileFacts] | None) -> None:
    """Write RAW (and FILES, when file checks ran) as a bundle to a binary FILEOBJ."""
    with tarfile.open(fileobj=fileobj, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        host = raw.host
        manifest = {
            "format": FORMAT,
            "tool": f"snapaudit {__version__}",
            "collected_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            **{key: getattr(host, key) for key in HOST_FIELDS},
            "files_checked": files is not None,
        }
        _add(tar, "manifest.json", _json(manifest))
        if raw.capabilities is not None:
            _add(tar, "capabilities.xml", raw.capabilities.encode())
        volumes = [
            {"pool": pool, "volume": name, **dataclasses.asdict(volume)}
            for (pool, name), volume in sorted(raw.volumes.items())
        ]
        _add(tar, "volumes.json", _json(volumes))  # before the domains, which name them
        for n, domain in enumerate(raw.domains, 1):
            base = f"domains/{n}"
            if domain.definition is not None:
                _add(tar, f"{base}/domain.xml", _bytes(domain.definition))
            listed = []
            for m, snap in enumerate(domain.snapshots, 1):
                _add(tar, f"{base}/snapshots/{m}.xml", _bytes(snap.xml))
                listed.append({"name": snap.name, "file": m, "current": bool(snap.current)})
            index = {"name": domain.name, "uuid": domain.uuid, "snapshots": listed}
            _add(tar, f"{base}/index.json", _json(index))  # last: the domain is complete
        if files is not None:
            _add(tar, "files.json", _json([dataclasses.asdict(f) for f in files.values()]))
        _add(tar, "skipped.json", _json([dataclasses.asdict(s) for s in raw.skipped]))


def read_bundle(path: str, timeout: float | None = None) -> HostScan:
    """The host a bundle describes, audited as if it were scanned now; not read within
    TIMEOUT seconds, it is given up."""
    deadline = None if timeout is None else time.monotonic() + timeout
    fd = open_regular_input(Path(path), BundleError)  # reached through no other user's link
    with os.fdopen(fd, "rb") as handle:
        try:
            with tarfile.open(fileobj=handle, mode="r:gz", tarinfo=_PlainMember) as tar:
                scan = _read(tar, path, deadline, timeout)
                _check_end(tar, path)
                return scan
        except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
            raise BundleError(f"{path}: not a readable bundle: {exc}") from None


def is_bundle(path: str) -> bool:
    """A regular file that starts like a gzip stream (the bundle's own checks come later),
    reached through no other user's link."""
    try:
        fd = open_regular_input(Path(path), BundleError)
    except BundleError:
        return False
    try:
        return os.read(fd, 2) == b"\x1f\x8b"
    finally:
        os.close(fd)


def _read(
    tar: tarfile.TarFile, path: str, deadline: float | None, timeout: float | None
) -> HostScan:
    manifest = None
    capabilities = None
    pending: dict[str, dict[str, bytes]] = {}  # domain dir → member → bytes, until its index
    domains, skipped, files = [], [], None
    volumes: dict[tuple[str, str], Volume] = {}
    count = total = waiting = 0
    offset = -1
    singles: set[str] = set()  # the members outside domains/, each at most once
    finished: set[str] = set()  # domains/N whose index.json was read
    identities: set[tuple[str, str]] = set()  # ("name" or "uuid", value) of those domains
    ended = False  # skipped.json is written last: without it the bundle was cut short
    for member in tar:
        # tarfile keeps every member it has read; nothing here needs them. (typeshed leaves
        # the attribute out: getmembers() would read the whole archive first.)
        tar.members.clear()  # type: ignore[attr-defined]
        count += 1
        total += member.size
        if count > MAX_MEMBERS or total > MAX_TOTAL_BYTES:
            raise BundleError(f"{path}: more members or bytes than a bundle holds")
        if member.offset <= offset:
            raise BundleError(f"{path}: a member header at byte {member.offset} goes back")
        offset = member.offset
        if deadline is not None and time.monotonic() > deadline:
            raise BundleError(f"{path}: timed out after {timeout:g} s")
        name = member.name
        if member.isdir():
            if member.size:
                raise BundleError(f"{path}: directory member {name!r} holds data: refused")
            continue
        reader = tar.extractfile(member) if member.isreg() else None
        if reader is None:
            raise BundleError(f"{path}: member {name!r} is a link or a device: refused")
        if not _MEMBER_NAME.match(name):
            raise BundleError(f"{path}: unexpected member {name!r}: refused")
        base, inner = _domain_part(name)
        if not base:
            twice = name in singles
            singles.add(name)
        else:
            twice = base in finished or inner in pending.get(base, {})
        if twice:
            raise BundleError(f"{path}: member {name!r} appears twice: refused")
        if member.size > MAX_FILE_BYTES:
            raise BundleError(f"{path}: member {name!r} is larger than 16 MiB")
        data = reader.read()
        if ended:
            raise BundleError(f"{path}: member {name!r} after skipped.json: refused")
        if manifest is None:
            if name != "manifest.json":
                raise BundleError(f"{path}: the first member is not manifest.json")
            manifest = read_manifest(data, path)
            uri = manifest["uri"]
            continue
        if name == "capabilities.xml":
            capabilities = data
        elif name == "volumes.json":
            volumes = read_volumes(data, path)
        elif name == "files.json":
            files = read_files(data, path)
        elif name == "skipped.json":
            skipped += read_skipped(data, path, uri)
            ended = True
        elif name.endswith("/index.json"):
            members = pending.pop(base, {})
            waiting -= sum(map(len, members.values()))
            raw, refused = read_domain(json_load(data, path, name), members, path, name)
            for key in (("name", raw.name), ("uuid", raw.uuid)):
                if key in identities:
                    raise BundleError(f"{path}: {name}: domain {key[0]} {key[1]!r} twice: refused")
                identities.add(key)
            finished.add(base)
            skipped += [Skipped(uri, raw.name, snap, reason) for snap, reason in refused]
            domain, missed = build_domain(uri, raw, recorded_resolver(volumes))
            skipped += missed
            if domain is not None:
                domains.append(domain)
        else:
            pending.setdefault(base, {})[inner] = data
            waiting += len(data)
            if waiting > MAX_PENDING_BYTES:
                raise BundleError(f"{path}: more domain data than a bundle holds before its index")
    if manifest is None:
        raise BundleError(f"{path}: empty bundle")
    if not ended:
        raise BundleError(f"{path}: the bundle is cut short (no skipped.json, its last member)")
    # Strings, or None (but the URI), as read_manifest checked.
    fields: dict[str, Any] = {key: manifest.get(key) for key in HOST_FIELDS}
    host = Host(**fields, external_snapshot_revert=external_snapshot_revert(capabilities))
    domains.sort(key=lambda d: (d.name, d.uuid))
    skipped.sort(key=lambda s: (s.domain or "", s.snapshot or "", s.reason))
    return HostScan(host, tuple(domains), tuple(skipped), files)


def _domain_part(name: str) -> tuple[str, str]:
    """("domains/N", the rest) for a domain's member, ("", NAME) for the others."""
    if not name.startswith("domains/"):
        return "", name
    number, _, rest = name.removeprefix("domains/").partition("/")
    return f"domains/{number}", rest


def _check_end(tar: tarfile.TarFile, path: str) -> None:
    """After the archive's end: only the zeros that pad it to a record, then the end of the
    gzip stream (a second gzip stream, or anything else, is not written by `collect`)."""
    stream = tar.fileobj
    stream.seek(tar.offset)  # where tarfile stopped: a header it could not read ends it too
    padding = 0
    while chunk := stream.read(64 * 1024):
        padding += len(chunk)
        if chunk.count(0) != len(chunk) or padding > tarfile.RECORDSIZE + 2 * tarfile.BLOCKSIZE:
            raise BundleError(f"{path}: data after the end of the archive: refused")


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
    tar.addfile(info, io.BytesIO(data))


def _bytes(text: str | bytes) -> bytes:
    return text.encode() if isinstance(text, str) else text


def _json(value: object) -> bytes:
    return (json.dumps(value, indent=1, ensure_ascii=False) + "\n").encode()
