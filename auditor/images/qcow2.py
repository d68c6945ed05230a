"""qcow2 images read natively and read-only: headers (for file checks) and cluster tables
(for fix mode). Layout from QEMU's docs/interop/qcow2.txt.

Headers: format, virtual size, backing file name and format, internal snapshot names, read
with a few preads and no process; anything this reader does not fully understand (encryption,
external data files, unknown features, protocol backing names) raises Qcow2Error so that the
caller asks `qemu-img` instead, which also words errors the way operators know them.

Tables: internal snapshots share clusters copy-on-write: a guest cluster whose table entry is
the same in two snapshots holds the same data in both. Counting the entries that differ gives
an upper bound of what `qemu-img rebase` will write into an overlay, without reading any data.
"""

from __future__ import annotations

import os
import stat
import struct
from dataclasses import dataclass

MAGIC = b"QFI\xfb"
_OFFSET_MASK = 0x00FF_FFFF_FFFF_FE00  # bits 9-55: host offset of an L2 table
_COPIED = 1 << 63  # refcount is 1: changes when a snapshot is taken, not the data
_EXTENDED_L2 = 1 << 4  # incompatible feature: 128-bit L2 entries with subcluster bitmaps


class Qcow2Error(ValueError):
    """Not a qcow2 image this reader understands."""


_HEADER_READ = 4096  # the header, its extensions and usually the backing name: one pread
_EXT_BACKING_FORMAT = 0xE2792ACA
_EXT_DATA_FILE = 0x44415441
_KNOWN_INCOMPATIBLE = 0b11111  # dirty, corrupt, data file, compression type, extended L2
_DATA_FILE = 1 << 2


@dataclass(frozen=True, slots=True)
class ImageHeader:
    """What `qemu-img info` says of one image, without its backing chain."""

    format: str  # qcow2 or raw
    virtual_size: int
    allocated: int  # bytes on disk (qemu-img's actual-size)
    backing_file: str | None = None  # as written in the image
    backing_format: str | None = None  # None: qemu probes it
    snapshots: tuple[str, ...] = ()  # internal snapshot names, in table order


def read_header(path: str, fmt: str | None = None) -> ImageHeader:
    """PATH's header as qcow2 (FMT None or "qcow2") or raw (FMT "raw": never probed, as qemu
    does when a backing format says so). Qcow2Error: ask qemu-img. Opened O_NONBLOCK: a FIFO
    named as an image must not block the scan."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        found = os.fstat(fd)
        if not stat.S_ISREG(found.st_mode):
            raise Qcow2Error(f"{path}: not a regular file")
        allocated = found.st_blocks * 512
        if fmt == "raw":
            return ImageHeader("raw", found.st_size, allocated)
        if fmt not in (None, "qcow2"):
            raise Qcow2Error(f"{path}: format {fmt} is not read natively")
        return _qcow2_header(fd, path, found.st_size, allocated)
    finally:
        os.close(fd)


def _qcow2_header(fd: int, path: str, file_size: int, allocated: int) -> ImageHeader:
    head = os.pread(fd, _HEADER_READ, 0)
    if len(head) < 72 or head[:4] != MAGIC:
        raise Qcow2Error(f"{path}: not a qcow2 image")
    version, backing_offset, backing_size, cluster_bits, size, crypt = struct.unpack_from(
        ">IQIIQI", head, 4
    )
    nb_snapshots, snapshots_offset = struct.unpack_from(">IQ", head, 60)
    if version not in (2, 3) or crypt or not 9 <= cluster_bits <= 21:
        raise Qcow2Error(f"{path}: version {version}, encryption {crypt}: not read natively")
    header_length, incompatible = 72, 0
    if version == 3:
        if len(head) < 104:
            raise Qcow2Error(f"{path}: truncated header")
        incompatible = struct.unpack_from(">Q", head, 72)[0]
        header_length = struct.unpack_from(">I", head, 100)[0]
    if incompatible & ~_KNOWN_INCOMPATIBLE or incompatible & _DATA_FILE:
        raise Qcow2Error(f"{path}: incompatible features {incompatible:#x}")
    backing_format = _backing_format(head, header_length, path)
    backing = None
    if backing_offset:
        end = backing_offset + backing_size
        # qemu-img writes the name right after the header extensions, inside the first read
        raw = (
            head[backing_offset:end]
            if end <= len(head)
            else os.pread(fd, backing_size, backing_offset)
        )
        if len(raw) != backing_size or not 0 < backing_size < 1024:
            raise Qcow2Error(f"{path}: unreadable backing file name")
        backing = raw.decode("utf-8", "surrogateescape")
        if _has_protocol(backing):
            raise Qcow2Error(f"{path}: backing {backing!r} is not a local file")
    names = _snapshot_names(fd, path, nb_snapshots, snapshots_offset, file_size)
    return ImageHeader("qcow2", size, allocated, backing, backing_format, names)


def _backing_format(head: bytes, offset: int, path: str) -> str | None:
    found = None
    while offset + 8 <= len(head):
        kind, length = struct.unpack_from(">II", head, offset)
        if kind == 0:
            return found
        data = head[offset + 8 : offset + 8 + length]
        if len(data) != length:
            break
        if kind == _EXT_DATA_FILE:
            raise Qcow2Error(f"{path}: external data file")
        if kind == _EXT_BACKING_FORMAT:
            found = data.decode("ascii", "replace")
        offset += 8 + ((length + 7) & ~7)
    raise Qcow2Error(f"{path}: header extensions beyond the first {_HEADER_READ} bytes")


def _snapshot_names(fd: int, path: str, count: int, offset: int, file_size: int):
    if not count:
        return ()
    # The table is read whole: entries are at most a few hundred bytes each.
    if count > 65536 or offset >= file_size:
        raise Qcow2Error(f"{path}: snapshot table out of range")
    table = os.pread(fd, min(count * 1024 + 4096, file_size - offset), offset)
    names, at = [], 0
    for _ in range(count):
        if at + 40 > len(table):
            raise Qcow2Error(f"{path}: truncated snapshot table")
        id_len, name_len = struct.unpack_from(">HH", table, at + 12)
        extra_len = struct.unpack_from(">I", table, at + 36)[0]
        name_at = at + 40 + extra_len + id_len
        if name_at + name_len > len(table):
            raise Qcow2Error(f"{path}: truncated snapshot table")
        names.append(table[name_at : name_at + name_len].decode("utf-8", "replace"))
        at = (name_at + name_len + 7) & ~7
    return tuple(names)


def _has_protocol(name: str) -> bool:
    """QEMU's path_has_protocol: a colon before any slash (json:, nbd:, ...)."""
    colon = name.find(":")
    return colon >= 0 and (name.find("/") < 0 or colon < name.find("/"))


@dataclass(frozen=True, slots=True)
class _L1:
    offset: int
    size: int  # entries


class Qcow2Tables:
    """The active layer's and each internal snapshot's cluster tables of one image."""

    def __init__(self, path: str):
        self.path = path
        self._fd = os.open(path, os.O_RDONLY)
        try:
            self._read_header()
        except BaseException:
            os.close(self._fd)
            raise

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> Qcow2Tables:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self, offset: int, length: int) -> bytes:
        data = os.pread(self._fd, length, offset)
        if len(data) != length:
            raise Qcow2Error(f"{self.path}: truncated at offset {offset}")
        return data

    def _read_header(self) -> None:
        header = self._read(0, 104)
        if header[:4] != MAGIC:
            raise Qcow2Error(f"{self.path}: not a qcow2 image")
        version, cluster_bits = struct.unpack_from(">I12xI", header, 4)
        l1_size, l1_offset = struct.unpack_from(">IQ", header, 36)
        nb_snapshots, snapshots_offset = struct.unpack_from(">IQ", header, 60)
        incompatible = struct.unpack_from(">Q", header, 72)[0] if version >= 3 else 0
        self.cluster_size = 1 << cluster_bits
        self._entry_size = 16 if incompatible & _EXTENDED_L2 else 8
        self._active = _L1(l1_offset, l1_size)
        self._snapshots: dict[str, _L1 | None] = {}
        offset = snapshots_offset
        for _ in range(nb_snapshots):
            fixed = self._read(offset, 40)
            table, size, id_len, name_len = struct.unpack_from(">QIHH", fixed)
            extra_len = struct.unpack_from(">I", fixed, 36)[0]
            name_at = offset + 40 + extra_len + id_len
            name = self._read(name_at, name_len).decode("utf-8", "replace")
            # A name held twice is ambiguous: None makes lookups of it fail.
            self._snapshots[name] = None if name in self._snapshots else _L1(table, size)
            offset = (name_at + name_len + 7) & ~7

    def _l1(self, snapshot: str | None) -> list[int]:
        table: _L1 | None
        if snapshot is None:
            table = self._active
        else:
            table = self._snapshots.get(snapshot)
            if table is None:
                raise Qcow2Error(f"{self.path}: no single internal snapshot {snapshot!r}")
        raw = self._read(table.offset, table.size * 8) if table.size else b""
        return [entry & _OFFSET_MASK for (entry,) in struct.iter_unpack(">Q", raw)]

    def _entries(self, l2_offset: int) -> list[tuple[int, ...]]:
        if not l2_offset:
            return []
        fmt = ">QQ" if self._entry_size == 16 else ">Q"
        table = self._read(l2_offset, self.cluster_size)
        return [(first & ~_COPIED, *rest) for first, *rest in struct.iter_unpack(fmt, table)]

    def differing_bytes(self, snapshot: str | None, base: str | None) -> int:
        """Bytes of guest clusters that may differ between SNAPSHOT and BASE (None: the active
        layer): an upper bound of what an overlay of one on the other stores."""
        mine, theirs = self._l1(snapshot), self._l1(base)
        per_table = self.cluster_size // self._entry_size
        differing = 0
        for index in range(max(len(mine), len(theirs))):
            a = mine[index] if index < len(mine) else 0
            b = theirs[index] if index < len(theirs) else 0
            if a == b:
                continue  # one shared L2 table, or both unallocated
            ours, other = self._entries(a), self._entries(b)
            empty = (0,) * (self._entry_size // 8)
            differing += sum(
                (ours[i] if ours else empty) != (other[i] if other else empty)
                for i in range(per_table)
            )
        return differing * self.cluster_size


def read_open(fd: int, path: str, found: os.stat_result | None = None) -> ImageHeader:
    """The qcow2 header of the file open at FD (read with pread only); Qcow2Error when it is
    not a regular file or not a qcow2 image this reader understands. For callers that must
    open the file themselves (O_NOFOLLOW, O_NONBLOCK). FOUND: FD's fstat, if made already."""
    found = found or os.fstat(fd)
    if not stat.S_ISREG(found.st_mode):
        raise Qcow2Error(f"{path}: not a regular file")
    return _qcow2_header(fd, path, found.st_size, found.st_blocks * 512)


def backing_path(image: str, recorded: str) -> str:
    """A recorded backing file name as a path: relative names are relative to the image."""
    if recorded.startswith("/"):
        return os.path.normpath(recorded)
    return os.path.normpath(os.path.join(os.path.dirname(image), recorded))


def backing_chain(path: str, limit: int = 64, header: ImageHeader | None = None) -> list[str]:
    """The images below PATH, nearest first, as far as they are regular qcow2 files this
    reader understands (read-only; O_NONBLOCK, so a FIFO named as a backing file cannot
    block). HEADER: PATH's own, when the caller has read it already."""
    chain: list[str] = []
    current = path
    while len(chain) < limit:
        if header is None:
            try:
                fd = os.open(current, os.O_RDONLY | os.O_NONBLOCK)
            except OSError:
                break
            try:
                header = read_open(fd, current)
            except (OSError, Qcow2Error):
                break
            finally:
                os.close(fd)
        if header.backing_file is None:
            break
        current, header = backing_path(current, header.backing_file), None
        if current in chain or current == path:
            break
        chain.append(current)
    return chain
