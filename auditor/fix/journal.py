"""The journal of one domain's conversion: its plan (with the original XML, for an exact
rollback), then one line per completed step.

JSON lines. The first line is written to a temporary file, flushed and renamed into place, so
a journal either holds its whole plan or does not exist. Every later line is appended and
fsynced before the next step starts. A torn last line (killed mid-write) is ignored, and cut
off before anything is appended: its step counts as not done and is run again, which every
step allows.

Besides the steps it records the identity (device, inode, size, mtime) of every image as it is
created, so that resume and rollback touch only files this conversion made and that are
still exactly those files, and the progress of a rollback, so that a conversion whose rollback
began is never resumed.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from auditor import safefs
from auditor.display import Problem
from auditor.fix import faults
from auditor.fix.names import IMAGE_NAME
from auditor.fix.plan import CreateImage, CreateOverlay, DomainPlan, RemoveOriginal, Restore
from auditor.fix.plan_json import plan_from_json, plan_to_json

SCHEMA = "snapaudit/fix-journal/v1"
OPEN, FINISHED, ROLLING_BACK, ROLLED_BACK = "open", "finished", "rolling back", "rolled back"
MAX_BYTES = 64 * 1024 * 1024  # far beyond any real plan; a bound for a hostile file
FileId = tuple[int, int, int, int]  # device, inode, size, mtime in ns


class JournalError(Problem):
    """The file is not a journal this version can use, or cannot be written; one line."""


def file_id(path: str) -> FileId | None:
    """The identity of the file at PATH itself (a symlink is not followed), None if absent."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class Journal:
    path: Path
    uri: str
    plan: DomainPlan
    done: set[int] = field(default_factory=set)
    state: str = OPEN
    created: dict[str, FileId] = field(default_factory=dict)  # image path → identity
    undone: set[str] = field(default_factory=set)  # rolled back: "metadata", image paths

    @classmethod
    def create(cls, path: Path, uri: str, plan: DomainPlan) -> Journal:
        header = {
            "type": "plan",
            "schema": SCHEMA,
            "created": _now(),
            "uri": uri,
            "plan": plan_to_json(plan, secrets=True),
        }
        if why := untrusted_directory(os.path.dirname(path) or "."):
            raise JournalError(f"cannot create journal {path}: {why}")
        # 0600: the journal holds the XML's secrets. Created, never replacing anything.
        try:
            safefs.create_file(str(path), (json.dumps(header, ensure_ascii=False) + "\n").encode())
        except OSError as exc:
            raise JournalError(f"cannot create journal {path}: {exc.strerror}") from None
        return cls(path, uri, plan)

    @property
    def restore(self) -> Restore:
        """The metadata as it was. Every journal holds it: load refuses a plan without it, and
        journals are created for ready plans only, which the planner makes with it."""
        if self.plan.restore is None:
            raise JournalError(f"{self.path} holds no original metadata")
        return self.plan.restore

    @classmethod
    def load(cls, path: Path, *, repair: bool = False) -> Journal:
        """Read a journal. Every record ends with a newline: text after the last one was torn
        by a crash. REPAIR (only while holding the domain's lock, as the next writer) cuts it
        off, so that the next record starts on a line of its own."""
        try:
            # Never through a symlink: a link planted at the journal's path must not make the
            # repair below cut some other file short. Nor waiting: opening a FIFO named as the
            # journal would block until someone writes to it (it is refused as not a file).
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise JournalError(f"{path} is a symlink: name the journal itself") from None
            raise JournalError(f"cannot read journal {path}: {exc.strerror}") from None
        with os.fdopen(fd, "rb") as source:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise JournalError(f"{path} is not a snapaudit fix journal (not a file)")
            if why := _untrusted(path, st):
                raise JournalError(f"not trusting journal {path}: {why}")
            try:
                data = source.read(MAX_BYTES + 1)
            except OSError as exc:
                raise JournalError(f"cannot read journal {path}: {exc.strerror}") from None
        if len(data) > MAX_BYTES:
            raise JournalError(f"{path} is not a snapaudit fix journal (over 64 MiB)")
        complete = data.rfind(b"\n") + 1
        if repair and complete < len(data):
            _cut(path, st, complete)
        records = []
        try:
            lines = data[:complete].decode("utf-8").splitlines()
        except UnicodeDecodeError:
            raise JournalError(f"{path} is not a snapaudit fix journal (not UTF-8)") from None
        for number, line in enumerate(lines, 1):
            try:
                records.append(json.loads(line))
            except (json.JSONDecodeError, RecursionError):
                raise JournalError(f"{path}: line {number} is not JSON") from None
        if not records or not isinstance(records[0], dict) or records[0].get("schema") != SCHEMA:
            raise JournalError(f"{path} is not a snapaudit fix journal ({SCHEMA})")
        header = records[0]
        try:
            plan = plan_from_json(header["plan"])
            if not isinstance(header["uri"], str):
                raise TypeError("uri")
            _check_plan(plan)
        except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as exc:
            raise JournalError(f"{path}: line 1 is not a valid plan ({_what(exc)})") from None
        journal = cls(path, header["uri"], plan)
        for number, record in enumerate(records[1:], 2):
            try:
                journal._apply(record, strict=True)
            except (KeyError, TypeError, ValueError) as exc:
                raise JournalError(
                    f"{path}: line {number} is not a valid record ({_what(exc)})"
                ) from None
        return journal

    def _apply(self, record: dict[str, Any], *, strict: bool = False) -> None:
        if not isinstance(record, dict):
            raise TypeError("not an object")
        match record.get("type"):
            case "done":
                step = record["step"]
                if type(step) is not int or not 1 <= step <= len(self.plan.steps):
                    raise ValueError(f"no step {step!r}")
                self.done.add(step)
            case "created":
                path, ident = record["path"], record["file"]
                if path not in {i.path for i in self.plan.images}:
                    raise ValueError(f"{path!r} is not an image of the plan")
                if not (len(ident) == 4 and all(type(n) is int for n in ident)):
                    raise ValueError("file identity")
                self.created[path] = tuple(ident)
            case "finished":
                self.state = FINISHED
            case "rollback-started":
                self.state = ROLLING_BACK
            case "undone":
                what = record["what"]
                if what != "metadata" and what not in {i.path for i in self.plan.images}:
                    raise ValueError(f"{what!r} is neither the metadata nor an image of the plan")
                self.undone.add(what)
            case "rolled-back":
                self.state = ROLLED_BACK
            case other if strict:
                raise ValueError(f"unknown record type {other!r}")

    def _append(self, record: dict[str, Any]) -> None:
        record["at"] = _now()
        faults.reached(faults.BEFORE_RECORD)
        try:
            safefs.append_file(str(self.path), (json.dumps(record) + "\n").encode())
        except OSError as exc:
            raise JournalError(f"cannot write journal {self.path}: {exc.strerror}") from None
        self._apply(record)
        faults.reached(faults.AFTER_RECORD)

    def image_created(self, path: str, made: str) -> None:
        """Record the identity of MADE, the file that becomes image PATH (renaming keeps it)."""
        ident = file_id(made)
        if ident is None:
            raise JournalError(f"{made} disappeared as it was created")
        self._append({"type": "created", "path": path, "file": list(ident)})

    def step_done(self, number: int) -> None:
        self._append({"type": "done", "step": number})

    def finish(self) -> None:
        self._append({"type": "finished"})

    def rollback_started(self) -> None:
        if self.state != ROLLING_BACK:
            self._append({"type": "rollback-started"})

    def undo_done(self, what: str) -> None:
        """Record one rollback step: "metadata" (domain and snapshots restored) or a new
        image's path (removed, or found absent). Rollback repairs whatever differs each time
        it runs, so these say how far it got; they do not let it skip anything."""
        self._append({"type": "undone", "what": what})

    def roll_back(self) -> None:
        self._append({"type": "rolled-back"})


def unfinished(directory: Path, uuid: str) -> list[Journal]:
    """The journals in DIRECTORY of conversions of domain UUID that neither finished nor were
    rolled back: a new plan made over one would strand what it began. Files that are not
    usable journals are none of them."""
    found = []
    for path in sorted(directory.glob(f"*.{uuid}.*.journal")):
        try:
            journal = Journal.load(path)
        except JournalError:
            continue
        if journal.plan.uuid == uuid and journal.state in (OPEN, ROLLING_BACK):
            found.append(journal)
    return found


def untrusted_directory(directory: str) -> str | None:
    """Why another user could replace a journal in DIRECTORY (or DIRECTORY itself, a symlink
    they own) under us, or None; in a sticky directory they cannot. A journal is trusted
    whole: its plan says which files fix creates and removes and which XML it defines, so
    nobody but root or the invoking user may be able to change it."""
    trusted = safefs.trusted_uids()
    try:
        link, st = os.lstat(directory), os.stat(directory)
    except OSError as exc:
        return f"{directory}: {exc.strerror}"
    if stat.S_ISLNK(link.st_mode) and link.st_uid not in trusted:
        return safefs.not_ours(f"symlink {directory}", link.st_uid)
    if st.st_mode & stat.S_ISVTX and st.st_uid in trusted:
        return None  # sticky, like /tmp: nobody else can rename or remove our journal
    return safefs.untrusted_directory(directory, st.st_uid, st.st_mode, trusted)


def _untrusted(path: Path, st: os.stat_result) -> str | None:
    # Only fix itself writes journals, as the user it runs as: under sudo, one the invoking
    # user owns is theirs, not fix's, and it decides what root removes.
    if st.st_uid != os.geteuid():
        return f"it belongs to uid {st.st_uid}, not to the user fix runs as (uid {os.geteuid()})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"other users can write to it (mode {stat.S_IMODE(st.st_mode):04o})"
    return untrusted_directory(os.path.dirname(path) or ".")


def _cut(path: Path, read: os.stat_result, size: int) -> None:
    """Truncate the journal that was read (READ: its identity) to SIZE bytes: opened without
    following a symlink, and only if PATH is still that very file."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise JournalError(f"cannot write journal {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (read.st_dev, read.st_ino):
            raise JournalError(f"{path} was replaced while it was read; not repairing it")
        os.ftruncate(fd, size)
        os.fsync(fd)
    except OSError as exc:
        raise JournalError(f"cannot write journal {path}: {exc.strerror}") from None
    finally:
        os.close(fd)


def _check_plan(plan: DomainPlan) -> None:
    """A plan is consistent with itself: it creates exactly its images, and removes only its
    originals. A journal edited to name other files is refused whole."""
    made = [s.path for s in plan.steps if isinstance(s, CreateImage | CreateOverlay)]
    if sorted(made) != sorted(i.path for i in plan.images) or len(set(made)) != len(made):
        raise ValueError("its images are not the ones its steps create")
    originals = {o.path for o in plan.originals}
    sources = {s.source for s in plan.steps if isinstance(s, CreateImage)}
    if sources != originals or originals & set(made):
        raise ValueError("its originals are not the ones its steps read")
    if any(s.path not in originals for s in plan.steps if isinstance(s, RemoveOriginal)):
        raise ValueError("it removes a file that is not one of its originals")
    if plan.restore is None:
        raise ValueError("it holds no original metadata")
    # What rollback may remove: only files fix names, in the directories planned for them.
    targets = {space.directory for space in plan.space}
    for image in plan.images:
        path = image.path
        if os.path.normpath(path) != path or not path.startswith("/"):
            raise ValueError(f"{path!r} is not a plain absolute path")
        if os.path.dirname(path) not in targets or not IMAGE_NAME.match(os.path.basename(path)):
            raise ValueError(f"{path!r} is not a new image in a directory planned for them")


def _what(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return f"missing {exc.args[0]!r}" if exc.args else "a missing field"
    return str(exc).splitlines()[0] if str(exc) else "malformed"
