"""What the live host says about a domain, as plain data: gather.py reads it (all the I/O),
the planner decides from it alone."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from auditor import safefs
from auditor.fix.tree import Capture, captures
from auditor.model import DomainDisk, FileFacts, Snapshot

# What qemu-img uses when an image does not say (the qcow2 default).
DEFAULT_CLUSTER = 65536


@dataclass(frozen=True, slots=True)
class SnapshotFacts:
    xml: str  # as libvirt reports it, secrets included
    model: Snapshot  # the same XML, parsed by the auditor's parser


@dataclass(frozen=True, slots=True)
class Filesystem:
    device: int
    available: int  # bytes free for writing (f_bavail)
    owner: int = 0  # of the directory: who else could swap files in it under us
    mode: int = 0o40755


@dataclass(frozen=True)
class DomainFacts:
    host: str
    name: str
    uuid: str
    state: str
    active: bool
    managed_save: bool
    xml: str  # inactive definition, secrets included
    disks: tuple[DomainDisk, ...]
    snapshots: tuple[SnapshotFacts, ...]  # parents first
    current: str | None
    images: Mapping[str, FileFacts] = field(default_factory=dict)
    target_dirs: Mapping[str, str] = field(default_factory=dict)  # disk → directory
    # Upper bound of each new image's size, by (disk, snapshot or None for now).
    estimates: Mapping[tuple[str, str | None], int] = field(default_factory=dict)
    # What an empty overlay on an image of each source's size takes.
    overlay_bytes: Mapping[str, int] = field(default_factory=dict)
    filesystems: Mapping[str, Filesystem] = field(default_factory=dict)  # directory → fs
    existing: frozenset[str] = frozenset()  # paths already present in the target dirs
    trusted_uids: frozenset[int] = frozenset({0})  # root and the invoking user
    # Overlays of external snapshots (and those libvirt made reverting to them) that the
    # conversion supersedes: read by nothing, written never, removed only on request.
    overlays: tuple[str, ...] = ()
    # Images other domains on the host use (disks, snapshots, their backing chains).
    elsewhere: frozenset[str] = frozenset()

    @property
    def captures(self) -> list[Capture]:
        return captures([s.model for s in self.snapshots], self.current, self.disks)

    def untrusted_target(self, directory: str) -> str | None:
        """Why another user could swap our new images in DIRECTORY under us, or None."""
        fs = self.filesystems[directory]
        return safefs.untrusted_directory(directory, fs.owner, fs.mode, self.trusted_uids)
