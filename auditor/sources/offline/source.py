"""Offline sources: a bundle written by `snapaudit collect`, or a directory laid out like
libvirt's snapshot metadata. Both give the same HostScan a live scan gives."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from auditor.display import one_line
from auditor.errors import UsageError
from auditor.inputs import missing, open_regular_input
from auditor.model import Domain, Host, HostScan
from auditor.sources.files.checks import gather_files
from auditor.sources.offline.bundle import BundleError, is_bundle, read_bundle
from auditor.sources.offline.metadata_dir import is_metadata_dir, scan_metadata_dir


class NotASource(UsageError):
    """A path that is neither a bundle nor a metadata directory (a usage error)."""


def check_source(path: Path) -> None:
    """Raise NotASource unless PATH can be audited: checked before anything is scanned. A
    file is opened as it will be read (through no other user's link), so that what refuses
    it is said now, in its own words."""
    if missing(path):
        raise NotASource(f"{path}: no such file or directory")
    if is_metadata_dir(path):
        return
    if not os.path.isdir(path):
        fd = open_regular_input(path, NotASource)
        try:
            magic = os.read(fd, 2)
        finally:
            os.close(fd)
        if magic == b"\x1f\x8b":
            return
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
    check: Callable[[Domain], object] | None = None,
    checked: dict | None = None,
    timeout: float | None = None,
) -> HostScan:
    """The host PATH describes. A bundle brings the file facts recorded when it was
    collected; a directory has none unless CHECK_FILES inspects its paths here, now.
    Without them, CHECK runs on each domain of a directory as it is read, into CHECKED
    (see scan_metadata_dir). Never raises for what the source holds: a source that cannot be
    read in full, or within TIMEOUT seconds, comes back with `host.error` set, as a host."""
    try:
        if is_bundle(str(path)):
            return read_bundle(str(path), timeout)
        if not check_files:
            return scan_metadata_dir(path, domain_xml, host_name, check, checked, timeout)
        scan = scan_metadata_dir(path, domain_xml, host_name, timeout=timeout)
        if scan.host.error:
            return scan
        return HostScan(scan.host, scan.domains, scan.skipped, gather_files(scan.domains))
    except BundleError as exc:
        return HostScan(Host(uri=str(path.absolute()), error=str(exc)))
    except MemoryError:  # one source too large for this machine: the others are still read
        return HostScan(Host(uri=str(path.absolute()), error=f"{path}: out of memory"))
    except Exception as exc:  # as for a host: one source's failure is its own error
        return HostScan(Host(uri=str(path.absolute()), error=f"{path}: {one_line(exc)}"))
