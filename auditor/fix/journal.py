"""The journal of one domain's conversion: its plan (with the original XML, for an exact
rollback), then one line per completed step.

JSON lines. The first line is written to a temporary file, flushed and renamed into place, so
a journal either holds its whole plan or does not exist. Every later line is appended and
fsynced before the next step starts. A torn last line (killed mid-write) is ignored, and cut
off before anything is appended: its step counts as not done and is run again, which every
step allows.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from auditor.fix.codec import plan_from_json, plan_to_json
from auditor.fix.images import fsync_dir
from auditor.fix.steps import DomainPlan

SCHEMA = "snapaudit/fix-journal/v1"
OPEN, FINISHED, ROLLED_BACK = "open", "finished", "rolled back"


class JournalError(Exception):
    """The file is not a journal this version can use."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class Journal:
    path: Path
    uri: str
    plan: DomainPlan
    done: set[int] = field(default_factory=set)
    state: str = OPEN

    @classmethod
    def create(cls, path: Path, uri: str, plan: DomainPlan) -> Journal:
        header = {
            "type": "plan",
            "schema": SCHEMA,
            "created": _now(),
            "uri": uri,
            "plan": plan_to_json(plan, secrets=True),
        }
        # mkstemp creates the file 0600: the journal holds the XML's secrets.
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(json.dumps(header, ensure_ascii=False) + "\n")
                out.flush()
                os.fsync(out.fileno())
            os.rename(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
        fsync_dir(str(path.parent))
        return cls(path, uri, plan)

    @classmethod
    def load(cls, path: Path, *, repair: bool = False) -> Journal:
        """Read a journal. Every record ends with a newline: text after the last one was torn
        by a crash. REPAIR (only while holding the domain's lock, as the next writer) cuts it
        off, so that the next record starts on a line of its own."""
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise JournalError(f"cannot read journal {path}: {exc.strerror}") from None
        complete = data.rfind(b"\n") + 1
        if repair and complete < len(data):
            with path.open("r+b") as out:
                out.truncate(complete)
                os.fsync(out.fileno())
        records = []
        for number, line in enumerate(data[:complete].decode("utf-8").splitlines(), 1):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                raise JournalError(f"{path}: line {number} is not JSON") from None
        if not records or records[0].get("schema") != SCHEMA:
            raise JournalError(f"{path} is not a snapaudit fix journal ({SCHEMA})")
        header = records[0]
        journal = cls(path, header["uri"], plan_from_json(header["plan"]))
        for record in records[1:]:
            journal._apply(record)
        return journal

    def _apply(self, record: dict[str, Any]) -> None:
        match record.get("type"):
            case "done":
                self.done.add(int(record["step"]))
            case "finished":
                self.state = FINISHED
            case "rolled-back":
                self.state = ROLLED_BACK

    def _append(self, record: dict[str, Any]) -> None:
        record["at"] = _now()
        with self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")
            out.flush()
            os.fsync(out.fileno())
        self._apply(record)

    def step_done(self, number: int) -> None:
        self._append({"type": "done", "step": number})

    def finish(self) -> None:
        self._append({"type": "finished"})

    def roll_back(self) -> None:
        self._append({"type": "rolled-back"})
