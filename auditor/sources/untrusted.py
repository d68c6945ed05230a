"""Reading files that someone else handed over (metadata directories, bundles): regular
files only, never through a link, never blocking on a FIFO, and never more than a bound."""

from __future__ import annotations

import os
import stat

MAX_FILE_BYTES = 16 * 1024 * 1024
_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class UntrustedFileError(ValueError):
    """A file that is not read, as one line saying why."""


def read_regular_file(path: str, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of PATH, which must be a regular file of at most LIMIT bytes. A symlink
    fails to open (O_NOFOLLOW); a FIFO or device opens without blocking and is refused."""
    try:
        fd = os.open(path, _FLAGS)
    except OSError as exc:
        if exc.errno == 40:  # ELOOP: the last component is a symlink
            raise UntrustedFileError("is a symbolic link: not followed") from None
        raise UntrustedFileError(f"cannot open: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UntrustedFileError(f"is not a regular file ({_kind(info.st_mode)})")
        if info.st_size > limit:
            raise UntrustedFileError(f"is larger than {limit // (1024 * 1024)} MiB")
        chunks, total = [], 0
        while chunk := os.read(fd, min(1 << 20, limit + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:  # grew while being read
                raise UntrustedFileError(f"is larger than {limit // (1024 * 1024)} MiB")
        return b"".join(chunks)
    except OSError as exc:
        raise UntrustedFileError(f"cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)


def check_xml_text(data: bytes) -> None:
    """Refuse what metadata never holds: DTDs and entity declarations (never expanded by
    the parser anyway, but a file carrying them was not written by libvirt), and text
    that is not UTF-8."""
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise UntrustedFileError("holds a DTD or entity declarations")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UntrustedFileError(f"is not UTF-8 (byte {exc.start})") from None


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a file"
