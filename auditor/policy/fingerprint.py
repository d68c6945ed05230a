"""Stable identities for findings, for baselines, diffs and SARIF.

Built from what survives a rescan: the host's identity (its host name when known, else the
URI), the domain's UUID (domains get renamed), the snapshot, the rule and the disk. Never
positions, timestamps or messages.
"""

from __future__ import annotations

import hashlib

from auditor.model import Finding, ScanResult


def fingerprint(finding: Finding, hostname: str | None) -> str:
    parts = (
        hostname or finding.host,
        finding.domain_uuid or finding.domain,
        finding.snapshot_label,
        finding.rule,
        finding.disk or "",
    )
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def hostnames(result: ScanResult) -> dict[str, str | None]:
    """Host URI → host name, for fingerprinting a result's findings."""
    return {scan.host.uri: scan.host.hostname for scan in result.hosts}
