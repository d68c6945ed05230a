"""How much an overlay will hold, read off a qcow2 image's cluster tables (read-only).

Internal snapshots share clusters copy-on-write: a guest cluster whose table entry is the same
in two snapshots holds the same data in both. Counting the entries that differ gives an upper
bound of what `qemu-img rebase` will write into an overlay, without reading any data. Layout
from QEMU's docs/interop/qcow2.txt.
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


_BACKING_FORMAT = 0xE2792ACA  # header extension: the backing file's format
_MAX_BACKING_NAME = 1023  # QEMU's limit


@dataclass(frozen=True, slots=True)
class Header:
    """What a qcow2 header says about the image's place in a chain."""

    virtual_size: int
    backing_file: str | None  # as recorded: may be relative to the image's directory
    backing_format: str | None


def read_header(fd: int, path: str) -> Header:
    """The header of the qcow2 image open at FD (read with pread only: any file position);
    Qcow2Error when it is not one."""

    def read(offset: int, length: int) -> bytes:
        data = os.pread(fd, length, offset)
        if len(data) != length:
            raise Qcow2Error(f"{path}: truncated at offset {offset}")
        return data

    header = read(0, 72)
    if header[:4] != MAGIC:
        raise Qcow2Error(f"{path}: not a qcow2 image")
    version, backing_offset, backing_size = struct.unpack_from(">IQI", header, 4)
    virtual_size = struct.unpack_from(">Q", header, 24)[0]
    if version not in (2, 3) or backing_size > _MAX_BACKING_NAME:
        raise Qcow2Error(f"{path}: unsupported qcow2 header")
    backing = None
    if backing_offset and backing_size:
        backing = read(backing_offset, backing_size).decode("utf-8", "surrogateescape")
    backing_format = None
    offset = struct.unpack_from(">I", read(100, 4))[0] if version >= 3 else 72
    for _ in range(64):  # header extensions, up to the end marker
        kind, length = struct.unpack(">II", read(offset, 8))
        if kind == 0:
            break
        if kind == _BACKING_FORMAT:
            backing_format = read(offset + 8, min(length, 16)).decode("ascii", "replace")
        offset += 8 + ((length + 7) & ~7)
    return Header(virtual_size, backing, backing_format)


def backing_path(image: str, recorded: str) -> str:
    """A recorded backing file name as a path: relative names are relative to the image."""
    if recorded.startswith("/"):
        return os.path.normpath(recorded)
    return os.path.normpath(os.path.join(os.path.dirname(image), recorded))


def backing_chain(path: str, limit: int = 64) -> list[str]:
    """The images below PATH, nearest first, as far as they are regular qcow2 files that
    can be opened (read-only, never blocking on a FIFO)."""
    chain: list[str] = []
    current = path
    while len(chain) < limit:
        try:
            fd = os.open(current, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            break
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                break
            header = read_header(fd, current)
        except (OSError, Qcow2Error):
            break
        finally:
            os.close(fd)
        if header.backing_file is None or "://" in header.backing_file:
            break
        current = backing_path(current, header.backing_file)
        if current in chain or current == path:
            break
        chain.append(current)
    return chain
