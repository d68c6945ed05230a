"""Offline sources: a bundle written by `snapaudit collect`, or a directory laid out like
libvirt's snapshot metadata. Both give the same HostScan a live scan gives."""

from __future__ import annotations

from pathlib import Path

from auditor.model import Host, HostScan
from auditor.sources.bundle import BundleError, is_bundle, read_bundle
from auditor.sources.files import gather_files
from auditor.sources.metadata_dir import is_metadata_dir, scan_metadata_dir


class NotASource(ValueError):
    """A path that is neither a bundle nor a metadata directory (a usage error)."""


def check_source(path: Path) -> None:
    """Raise NotASource unless PATH can be audited: checked before anything is scanned."""
    if not path.exists() and not path.is_symlink():
        raise NotASource(f"{path}: no such file or directory")
    if not (is_bundle(str(path)) or is_metadata_dir(path)):
        raise NotASource(
            f"{path}: neither a bundle (snapaudit collect) nor a snapshot metadata "
            "directory (DOMAIN/SNAPSHOT.xml)"
        )


def read_source(
    path: Path,
    *,
    domain_xml: Path | None = None,
    host_name: str | None = None,
    check_files: bool = False,
) -> HostScan:
    """The host PATH describes. A bundle brings the file facts recorded when it was
    collected; a directory has none unless CHECK_FILES inspects its paths here, now."""
    if is_bundle(str(path)):
        try:
            return read_bundle(str(path))
        except BundleError as exc:
            return HostScan(Host(uri=str(path.absolute()), error=str(exc)))
    scan = scan_metadata_dir(path, domain_xml, host_name)
    if check_files:
        return HostScan(scan.host, scan.domains, scan.skipped, gather_files(scan.domains))
    return scan
