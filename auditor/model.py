"""The immutable audit model: what a source reads off a host, and what rules produce.

Every source (a libvirt connection today, offline metadata files later) builds these same
records; rules and reporters see nothing else.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal


class Severity(enum.StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def rank(self) -> int:
        return _RANKS[self]


_RANKS = {Severity.INFO: 0, Severity.WARNING: 1, Severity.ERROR: 2}

# What libvirt writes. Sources keep what metadata says, forged or not: fields take any str too.
MemoryMode = Literal["no", "internal", "external"]  # <memory snapshot=>, or libvirt's default
DiskMode = Literal["no", "internal", "external", "manual"]  # a disk's snapshot=, once aligned
DomainState = Literal[
    "nostate", "running", "blocked", "paused", "shutdown", "shutoff", "crashed", "pmsuspended"
]
SnapshotState = DomainState | Literal["disk-snapshot"]  # the domain's, or disk-only while running
WaiverStatus = Literal["active", "expired", "stale"]


@dataclass(frozen=True, slots=True)
class DiskSource:
    """Where a disk's data lives.

    `type` is the storage the data sits on: libvirt's source type (file, block, network...),
    or, for a disk of type='volume', the type of the storage volume it names once resolved
    over the host's connection (file, block, dir, network, netdir, ploop); it stays
    `volume` when the volume could not be resolved.
    """

    type: str
    # file path, block device, a resolved volume's target path, or a label (protocol/name
    # for network disks, POOL/VOLUME for unresolved volumes)
    path: str | None
    format: str | None  # the <driver type>, e.g. qcow2 or raw
    volume: str | None = None  # POOL/VOLUME, for disks that name a storage volume
    unresolved: str | None = None  # why that volume could not be resolved, if it could not

    def facts(self, files: Mapping[str, FileFacts]) -> FileFacts | None:
        """What FILES say about the source's path; None when it names none."""
        return None if self.path is None else files.get(self.path)


@dataclass(frozen=True, slots=True)
class SnapshotDisk:
    """One disk of a snapshot, joined by target name with the snapshot's embedded domain."""

    name: str
    mode: DiskMode | str  # how the snapshot captured the disk
    overlay: DiskSource | None  # external snapshots only: the file created at snapshot time
    # The disk's source in the embedded domain: the image that holds the saved state.
    state_image: DiskSource | None
    device: str | None  # disk | cdrom | floppy | lun; None when the domain is not embedded
    readonly: bool
    # True when the snapshot gives no snapshot= for the disk and libvirt's default applied.
    defaulted: bool = False
    listed: bool = True  # whether the snapshot's <disks> lists the disk

    @property
    def storage(self) -> DiskSource | None:
        """The storage this snapshot captured the disk into."""
        return self.overlay if self.mode == "external" else self.state_image


@dataclass(frozen=True, slots=True)
class Snapshot:
    host: str  # the URI as given
    domain: str
    domain_uuid: str
    name: str
    state: SnapshotState | str  # "" when the metadata gives none
    created: datetime | None
    parent: str | None
    current: bool
    description: str | None
    memory: MemoryMode | str
    memory_file: str | None
    disks: tuple[SnapshotDisk, ...]
    # Facts from the embedded <domain>; None when the metadata carries no definition.
    has_domain_definition: bool = True
    has_guest_agent: bool = False
    # Overlays libvirt (9.9+) created when reverting to this snapshot while it had children
    # (<revertDisks>): the domain's current disks may sit on them.
    revert_overlays: tuple[str, ...] = ()
    has_children: bool = False  # another snapshot of the domain names this one as parent


@dataclass(frozen=True, slots=True)
class DomainDisk:
    """A disk of the domain's current definition."""

    name: str
    source: DiskSource | None  # None for an empty drive
    device: str
    readonly: bool


@dataclass(frozen=True, slots=True)
class Domain:
    host: str
    name: str
    uuid: str
    disks: tuple[DomainDisk, ...]  # read only when the host's files are checked
    snapshots: tuple[Snapshot, ...]  # oldest first

    def disk_sources(self) -> tuple[DiskSource, ...]:
        """Every disk source the domain names: its current disks', then each snapshot's
        overlays and state images (oldest snapshot first)."""
        sources = [d.source for d in self.disks]
        for snap in self.snapshots:
            sources += [d.overlay for d in snap.disks] + [d.state_image for d in snap.disks]
        return tuple(s for s in sources if s is not None)


@dataclass(frozen=True, slots=True)
class FileFacts:
    """What the host's file system says about a file named in metadata (local hosts only)."""

    path: str
    exists: bool
    size: int | None = None  # bytes allocated on disk
    format: str | None = None  # image format; None for files that are not disk images
    backing_chain: tuple[str, ...] = ()  # the images below this one, nearest first
    internal_snapshots: tuple[str, ...] = ()  # qcow2 snapshot tags held in this image
    error: str | None = None  # why the image or its backing chain could not be opened
    # What the path is (stat, following links): file (a regular file), block, char,
    # directory, fifo or socket; None when it is missing or could not be stat'ed.
    file_type: str | None = None
    # The chain's depth where it is known without its images' names (a report read back);
    # otherwise chain_depth counts backing_chain.
    known_depth: int | None = None
    # Found by scanning a directory that holds the host's images, and named by no domain's
    # metadata there (disks, snapshots, their backing chains): a candidate orphan.
    unreferenced: bool = False
    # What fix mode also reads of an image it converts (audits leave them None): the guest-
    # visible size and cluster size, for its estimates, and the file's device, inode,
    # apparent length and mtime, which identify the original it must never see change.
    virtual_size: int | None = None
    cluster_size: int | None = None
    length: int | None = None
    mtime_ns: int | None = None
    device: int | None = None
    inode: int | None = None

    @property
    def chain_depth(self) -> int | None:
        """Images in the chain, this one included; None when the chain could not be read."""
        if not self.exists or self.error:
            return None
        return self.known_depth if self.known_depth is not None else 1 + len(self.backing_chain)


class FileFactsMap(dict[str, FileFacts]):
    """A host's file facts by path (a dict of FileFacts), as a scan that checked files gives
    them: it also finds the unreferenced images of some directories without going through
    every path. SNAP018 asks once per domain, and a host has thousands of files and few
    unreferenced ones. The index is built on the first question: fill the dict first."""

    __slots__ = ("_unreferenced",)
    _unreferenced: dict[str, list[str]]  # directory -> its unreferenced images

    def unreferenced_in(self, directories: Iterable[str]) -> list[str]:
        """The unreferenced images directly in DIRECTORIES, by path, sorted."""
        try:
            index = self._unreferenced
        except AttributeError:
            index = {}
            for path, facts in self.items():
                if facts.unreferenced:
                    index.setdefault(os.path.dirname(path), []).append(path)
            self._unreferenced = index
        return sorted(p for d in set(directories) for p in index.get(d, ()))


def unreferenced_in(files: Mapping[str, FileFacts], directories: Iterable[str]) -> list[str]:
    """The unreferenced images of FILES directly in DIRECTORIES, by path, sorted; indexed
    when FILES is a FileFactsMap, otherwise found by going through every path."""
    if isinstance(files, FileFactsMap):
        return files.unreferenced_in(directories)
    wanted = set(directories)
    return sorted(p for p, f in files.items() if f.unreferenced and os.path.dirname(p) in wanted)


@dataclass(frozen=True, slots=True)
class Host:
    uri: str
    hostname: str | None = None
    libvirt_version: str | None = None
    hypervisor_version: str | None = None
    error: str | None = None  # why the host could not be scanned, if it could not
    driver: str | None = None  # libvirt's driver name: QEMU, TEST...
    # Whether the host's libvirt can revert to and delete external snapshots
    # (<externalSnapshot/> in its capabilities); None when unknown.
    external_snapshot_revert: bool | None = None


@dataclass(frozen=True, slots=True)
class Skipped:
    """Something that was listed but not audited, and why."""

    host: str
    domain: str | None
    snapshot: str | None
    reason: str
    # Vanished objects no longer exist, so they do not make the audit incomplete.
    vanished: bool = False


@dataclass(frozen=True, slots=True)
class HostScan:
    host: Host
    domains: tuple[Domain, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    # Facts about every file the metadata names, by path; None when files were not checked.
    files: Mapping[str, FileFacts] | None = None

    @property
    def snapshots(self) -> tuple[Snapshot, ...]:
        return tuple(s for d in self.domains for s in d.snapshots)


@dataclass(frozen=True, slots=True)
class Finding:
    rule: str
    name: str
    severity: Severity
    host: str
    domain: str
    snapshot: str  # the libvirt snapshot's name; "" for findings about no snapshot of libvirt's
    disk: str | None
    message: str
    remediation: str
    image: str | None = None  # the image file a finding is about, when it is about one
    domain_uuid: str = ""
    waiver: Waiver | None = None  # the active waiver that covers this finding, if any
    baselined: bool = False  # present in the baseline the scan was compared with
    tag: str | None = None  # an internal snapshot in `image` that libvirt has no metadata for

    @property
    def snapshot_label(self) -> str:
        """The snapshot as reports, fingerprints and waivers name it: the libvirt snapshot's
        name; for a finding about an image and no libvirt snapshot, the image's path, followed
        by @TAG when it is about an internal snapshot held in the image."""
        if self.snapshot or self.image is None:
            return self.snapshot
        return self.image if self.tag is None else f"{self.image}@{self.tag}"

    @property
    def suppressed(self) -> bool:
        """Waived or baselined: reported, but it does not fail the gate."""
        return self.waiver is not None or self.baselined


@dataclass(frozen=True, slots=True)
class Waiver:
    """An accepted exception: findings of `rule` on matching hosts/domains/snapshots (glob
    patterns) are reported as waived until `expires`."""

    rule: str  # a rule code or name
    reason: str
    owner: str
    expires: date
    host: str = "*"
    domain: str = "*"
    snapshot: str = "*"
    origin: str = ""  # FILE:LINE where it was declared


@dataclass(frozen=True, slots=True)
class WaiverUse:
    waiver: Waiver
    status: WaiverStatus  # expired: no longer waives anything; stale: matched nothing
    matched: int  # findings it matched


@dataclass(frozen=True, slots=True)
class BaselineOutcome:
    path: str
    known: int  # findings of this scan that the baseline already had
    new: int  # findings that are not in the baseline
    fixed: int  # baseline entries no longer found


@dataclass(frozen=True, slots=True)
class RulePolicy:
    """How one rule ran: its effective severity and parameters, and the rule's documentation
    (for reporters that describe rules) where it is known."""

    code: str
    name: str
    severity: Severity
    params: Mapping[str, object]
    summary: str | None = None  # None: documentation not known (a report read back from JSON)
    sections: Mapping[str, str] = field(default_factory=dict)  # documentation, by heading
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Policy:
    rules: tuple[RulePolicy, ...]  # the rules that ran
    sources: tuple[str, ...] = ()  # configuration files read, in order


@dataclass(frozen=True, slots=True)
class RuleError:
    """A rule that failed to load, or raised on one snapshot."""

    rule: str
    message: str
    host: str | None = None
    domain: str | None = None
    snapshot: str | None = None


@dataclass(frozen=True, slots=True)
class ScanResult:
    generated_at: datetime
    hosts: tuple[HostScan, ...]
    findings: tuple[Finding, ...]
    rule_errors: tuple[RuleError, ...] = ()
    waivers: tuple[WaiverUse, ...] = ()
    baseline: BaselineOutcome | None = None
    policy: Policy | None = None
    duration: float | None = None  # seconds the scan took

    @property
    def snapshots(self) -> tuple[Snapshot, ...]:
        return tuple(s for h in self.hosts for s in h.snapshots)

    @property
    def skipped(self) -> tuple[Skipped, ...]:
        return tuple(s for h in self.hosts for s in h.skipped)
