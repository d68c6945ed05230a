"""Per-disk figures that reports show when a host's files were checked."""

from __future__ import annotations

from collections.abc import Mapping

from auditor.model import FileFacts, Snapshot, SnapshotDisk


def _size(files: Mapping[str, FileFacts], path: str | None) -> int | None:
    facts = files.get(path) if path else None
    return facts.size if facts is not None else None


def disk_facts(disk: SnapshotDisk, files: Mapping[str, FileFacts]) -> dict[str, int | None]:
    """Bytes on disk of the overlay and of the state image, and how many images deep the
    chain under the snapshot's storage is (1: a standalone image)."""
    storage = disk.storage
    facts = files.get(storage.path) if storage and storage.path else None
    return {
        "overlay_size": _size(files, disk.overlay.path if disk.overlay else None),
        "state_size": _size(files, disk.state_image.path if disk.state_image else None),
        "chain_depth": facts.chain_depth if facts is not None else None,
    }


def memory_size(snapshot: Snapshot, files: Mapping[str, FileFacts]) -> int | None:
    return _size(files, snapshot.memory_file) if snapshot.memory == "external" else None
