"""The records of fix mode: the steps a plan runs, the plan itself and what became of it,
plain frozen data.

The planner (planner.py) makes them, plan_json.py turns them into JSON and back for the journal
and the JSON output, execute.py runs them, and the fix plan reporter prints them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal


@dataclass(frozen=True)
class Options:
    drop_memory: bool = False
    remove_originals: bool = False


# Steps, in the order a plan runs them. Each is idempotent, or detectably done (execute.py).


@dataclass(frozen=True)
class CreateImage:
    """A disk state as a new image: a full copy when `backing` is None, else an overlay."""

    kind: ClassVar[str] = "create-image"
    path: str
    disk: str
    snapshot: str | None  # None: the disk as it is now
    source: str
    source_format: str
    backing: str | None
    cluster_size: int
    tag: str | None  # the source's internal snapshot to read; None: its active layer


@dataclass(frozen=True)
class CreateOverlay:
    """An empty overlay on a snapshot's state image: what a leaf snapshot that is not current
    names as "the changes made after it", of which nothing was kept."""

    kind: ClassVar[str] = "create-overlay"
    path: str
    disk: str
    snapshot: str
    backing: str


@dataclass(frozen=True)
class VerifyImage:
    kind: ClassVar[str] = "verify-image"
    path: str
    disk: str
    snapshot: str | None
    source: str
    source_format: str
    tag: str | None  # as CreateImage's


@dataclass(frozen=True)
class DropSnapshotMetadata:
    kind: ClassVar[str] = "drop-snapshot-metadata"
    snapshot: str


@dataclass(frozen=True)
class RedefineSnapshot:
    kind: ClassVar[str] = "redefine-snapshot"
    snapshot: str
    current: bool
    states: dict[str, str]  # disk → the image holding the snapshot's state
    overlays: dict[str, str]  # disk → the image holding what changed after it
    xml: str  # secrets included: stored in the journal, never printed


@dataclass(frozen=True)
class DefineDomain:
    kind: ClassVar[str] = "define-domain"
    sources: dict[str, str]  # disk → its new top image
    xml: str


@dataclass(frozen=True)
class RemoveOriginal:
    kind: ClassVar[str] = "remove-original"
    path: str


Step = (
    CreateImage
    | CreateOverlay
    | VerifyImage
    | DropSnapshotMetadata
    | RedefineSnapshot
    | DefineDomain
    | RemoveOriginal
)


# The plan.


@dataclass(frozen=True)
class NewImage:
    path: str
    disk: str
    snapshot: str | None  # None: the disk as it is now
    source: str  # the original image it is read from
    backing: str | None  # None: a full image
    estimated_bytes: int  # an upper bound
    after: bool = False  # an empty overlay for what comes after a leaf snapshot


@dataclass(frozen=True)
class Original:
    """A source image: never written. Its file (device and inode) proves it was not replaced,
    its size and mtime that it was not written either (0: a journal from before the file was
    recorded)."""

    path: str
    size: int
    mtime_ns: int
    device: int = 0
    inode: int = 0


@dataclass(frozen=True)
class Space:
    directory: str
    needed: int
    available: int


@dataclass(frozen=True)
class Restore:
    """The metadata as it was, for an exact rollback."""

    domain_xml: str
    snapshots: tuple[tuple[str, str], ...]  # (name, XML), parents first
    current: str | None


PlanStatus = Literal["refused", "ready", "nothing to do"]
OutcomeResult = Literal["converted", "rolled back", "failed"]


@dataclass(frozen=True)
class DomainPlan:
    host: str
    domain: str
    uuid: str
    refusals: tuple[str, ...] = ()
    snapshots: tuple[str, ...] = ()  # converted, parents first
    current: str | None = None
    disks: tuple[str, ...] = ()
    images: tuple[NewImage, ...] = ()
    space: tuple[Space, ...] = ()
    originals: tuple[Original, ...] = ()
    remove_originals: bool = False
    steps: tuple[Step, ...] = ()
    restore: Restore | None = None
    # What the user should know about a state the conversion keeps as libvirt has it now.
    notes: tuple[str, ...] = ()

    @property
    def status(self) -> PlanStatus:
        if self.refusals:
            return "refused"
        return "ready" if self.steps else "nothing to do"


@dataclass(frozen=True)
class Outcome:
    """What a run did with one domain's plan."""

    plan: DomainPlan
    result: OutcomeResult | None = None  # None: a dry run, refused, or nothing to do
    journal: str | None = None
    error: str | None = None


# How messages name things. Unescaped: refusals are stored as they are (in journals and JSON
# plans); whatever prints to a terminal escapes the whole line (auditor.display.clean).


def quoted(name: str) -> str:
    return f"'{name}'"


def at(snapshot: str | None) -> str:
    """A disk state, as the records give it: a snapshot, or None for the disk as it is now."""
    return "its current state" if snapshot is None else f"snapshot {quoted(snapshot)}"
