"""The gate as scan and diff apply it: the exit code for a --fail-on choice."""

from __future__ import annotations

from collections.abc import Iterable

from auditor.cli import exits
from auditor.model import Finding, ScanResult


def exit_code(result: ScanResult, findings: Iterable[Finding], fail_on: str) -> int:
    """3 when RESULT is incomplete (a gate must not pass on what it never saw), else 1 when
    one of FINDINGS fails the gate at FAIL_ON, else 0."""
    from auditor.reports.summary import complete, fails

    if not complete(result):
        return exits.INCOMPLETE
    if fails(findings, fail_on):
        return exits.FINDINGS
    return exits.OK
