"""Bounded reading of the files snapaudit is given: reports, baselines, configuration, and
the metadata directories and bundles that offline audits read.

A file from elsewhere may be huge, nested 200,000 deep or hold a 5,000-digit number; each
would exhaust memory or the stack, or raise where nothing expects it. These readers bound the
size, the nesting (checked before parsing JSON, so the parser never recurses that far) and the
length of numbers, and turn every problem into one line that names the file.
"""

from __future__ import annotations

import json
import os
import re
import stat
import tomllib
from pathlib import Path

from auditor.display import one_line
from auditor.safefs.chase import Untrusted, chase, not_ours, trusted_uids

MAX_FILE_BYTES = 16 * 1024 * 1024
_UNTRUSTED_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
MAX_JSON_BYTES = 256 * 1024 * 1024  # far above a report of a large fleet
MAX_TOML_BYTES = 4 * 1024 * 1024  # a configuration file with thousands of waivers
MAX_DEPTH = 32  # a report nests 7 deep, a configuration 4
MAX_DIGITS = 19  # integers up to 2**63: sizes in bytes, counts
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


class InputError(ValueError):
    """What is wrong with the content, without the file's name."""


def read_json(
    path: Path,
    error: type[Exception],
    what: str,
    max_bytes: int = MAX_JSON_BYTES,
    *,
    trusted: bool = False,
):
    """The JSON document in PATH, or ERROR with one line naming the file; WHAT names the
    kind of file expected ("snapaudit report"). TRUSTED: see read_regular_input."""
    try:
        return parse_json(read_regular_input(path, error, max_bytes, trusted=trusted))
    except InputError as exc:
        raise error(f"{path}: not a {what} ({exc})") from None


def parse_json(raw: bytes):
    """The JSON document in RAW, bounded in depth and number size; InputError otherwise."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text") from None
    _check_json_depth(text)
    try:
        return json.loads(
            text, parse_int=_integer, parse_float=_number, parse_constant=_no_constant
        )
    except json.JSONDecodeError as exc:
        raise InputError(f"not JSON: {exc.msg} at line {exc.lineno}") from None


def read_toml_text(
    path: Path, error: type[Exception], max_bytes: int = MAX_TOML_BYTES, *, trusted: bool = False
) -> str:
    raw = read_regular_input(path, error, max_bytes, trusted=trusted)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: cannot read: {one_line(exc)}") from None


def parse_toml(text: str) -> dict:
    """tomllib.loads, bounded in depth: tomllib recurses once per nested array or inline
    table, so a deep enough file would exhaust the stack; InputError instead."""
    try:
        data = tomllib.loads(text)
    except RecursionError:
        raise InputError(f"nested more than {MAX_DEPTH} deep") from None
    if _depth(data) > MAX_DEPTH:
        raise InputError(f"nested more than {MAX_DEPTH} deep")
    return data


def read_regular_input(
    path: Path, error: type[Exception], max_bytes: int, *, trusted: bool = False
) -> bytes:
    """The bytes of PATH, a regular file opened without blocking (a FIFO or device is
    refused, never waited on), reached through no symlink another user owns. TRUSTED (a
    configuration, waivers, a baseline: files that decide what a gate says): the file and
    every directory above it must also belong to root or the invoking user and be writable
    by nobody else. Any problem is ERROR, one line that names the file and never shows what
    it holds."""
    with os.fdopen(open_regular_input(path, error, trusted=trusted), "rb") as stream:
        try:
            raw = stream.read(max_bytes + 1)
        except OSError as exc:
            raise error(f"{path}: cannot read: {exc.strerror or one_line(exc)}") from None
    if len(raw) > max_bytes:
        raise error(f"{path}: cannot read: larger than {max_bytes // 2**20} MiB")
    return raw


def open_regular_input(path: Path, error: type[Exception], *, trusted: bool = False) -> int:
    """A descriptor of PATH open for reading, by read_regular_input's rules."""
    try:
        with chase(str(path), directories=trusted) as found:
            if found.descriptor is not None:
                raise error(f"{path}: cannot read: not a regular file")
            fd = os.open(found.name, _UNTRUSTED_FLAGS, dir_fd=found.dir_fd)
    except Untrusted as exc:
        raise error(f"{path}: not used: {exc}") from None
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror or one_line(exc)}") from None
    st = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(st.st_mode):
        problem = f"cannot read: not a regular file ({_kind(st.st_mode)})"
    elif trusted and (why := file_problem(st)):
        problem = f"not used: {why}"
    if problem:
        os.close(fd)
        raise error(f"{path}: {problem}")
    return fd


def missing(path: Path) -> bool:
    """Whether PATH is known not to exist. Behind a directory we may not search it is not
    known: reading it then says why (EACCES), where "not found" would mislead."""
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:
        return False
    return False


def file_problem(st: os.stat_result) -> str | None:
    """Why a file that decides what snapaudit does could have been written by another user."""
    if st.st_uid not in trusted_uids():
        return not_ours("it", st.st_uid)
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        who = "every user" if st.st_mode & stat.S_IWOTH else "its group"
        return f"it is writable by {who} (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def _check_json_depth(text: str) -> None:
    depth = 0
    for token in _TOKENS.finditer(text):
        bracket = token.group()
        if bracket in ("[", "{"):
            depth += 1
            if depth > MAX_DEPTH:
                raise InputError(f"nested more than {MAX_DEPTH} deep")
        elif bracket in ("]", "}"):
            depth -= 1


def _depth(value: object) -> int:
    # Only called on what tomllib managed to build, which it did recursively already.
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


def _integer(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_DIGITS:
        raise InputError(f"an integer of {digits} digits")
    return int(text)


def _number(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise InputError(f"number {text[:20]} out of range")
    return value


def _no_constant(name: str):
    raise InputError(f"{name} is not a JSON number")


def read_regular_file(
    path: str, limit: int = MAX_FILE_BYTES, *, dir_fd: int | None = None
) -> bytes:
    """The bytes of PATH (in the directory open as DIR_FD), which must be a regular file of
    at most LIMIT bytes. A symlink fails to open (O_NOFOLLOW); a FIFO or device opens without
    blocking and is refused."""
    try:
        fd = os.open(path, _UNTRUSTED_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == 40:  # ELOOP: the last component is a symlink
            raise InputError("is a symbolic link: not followed") from None
        raise InputError(f"cannot open: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"is not a regular file ({_kind(info.st_mode)})")
        if info.st_size > limit:
            raise InputError(f"is larger than {limit // (1024 * 1024)} MiB")
        chunks, total = [], 0
        while chunk := os.read(fd, min(1 << 20, limit + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:  # grew while being read
                raise InputError(f"is larger than {limit // (1024 * 1024)} MiB")
        return b"".join(chunks)
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)


_SURROGATE = re.compile("[\ud800-\udfff]")


def check_text(value: object) -> None:
    """Refuse lone surrogates anywhere in a parsed JSON value: JSON's `\\udcff` escapes
    decode to them, and no report writer can encode them again."""
    if isinstance(value, str):
        if _SURROGATE.search(value):
            raise InputError("holds a lone surrogate, which is not Unicode text")
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(key)
            check_text(item)
    elif isinstance(value, list):
        for item in value:
            check_text(item)


def shown_name(name: str) -> str:
    """A file name as text that every report can hold: bytes that are not UTF-8 (which
    Python keeps as lone surrogates) as `\\xff`."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


# An XML declaration's encoding (the declaration comes first, after a byte order mark at most).
_ENCODING = re.compile(rb"(?:\xef\xbb\xbf)?<\?xml\s[^>]*?\bencoding\s*=\s*[\"']([A-Za-z0-9._-]*)")


def check_xml_text(data: bytes) -> None:
    """Refuse what metadata never holds: DTDs and entity declarations (the parser refuses
    them too; here a file is named before it is parsed), and text that is not UTF-8 or
    declares another encoding."""
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise InputError("holds a DTD or entity declarations")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"is not UTF-8 (byte {exc.start})") from None
    # XML holds no NUL; UTF-16 and UTF-32 text without a byte order mark is valid UTF-8
    # bytes (ASCII and NULs), and the parser would read it as what it is, DTD included.
    if (nul := data.find(b"\0")) >= 0:
        raise InputError(f"is not UTF-8 XML (byte {nul} is NUL)")
    # The parser reads the text in the encoding it declares: in UTF-7, ASCII bytes hide the
    # markup looked for above (`+ADw-!DOCTYPE`).
    declared = _ENCODING.match(data)
    if declared and declared[1].lower() not in (b"utf-8", b"utf8"):
        raise InputError(f"declares the encoding {declared[1].decode()}, not UTF-8")


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
