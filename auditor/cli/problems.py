"""What could not be audited, as lines for stderr, for runs whose report is not text on the
terminal: a CI log must show why the exit code is 3 without opening the report."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from auditor.display import plural
from auditor.model import ScanResult, Waiver

# More skipped items and rule errors than this are summed up in one line that names the
# report, so that a host with thousands of broken snapshots does not flood the log.
MAX_LINES = 10


def problem_lines(result: ScanResult, paths: Iterable[Path | None]) -> list[str]:
    """One line per host not scanned, per item skipped and per rule error (or, past
    MAX_LINES of the last two, their counts and where the report is), then one per waiver
    that is expired or stale. The caller escapes them for the terminal."""
    lines = [
        f"cannot scan {scan.host.uri}: {scan.host.error}"
        for scan in result.hosts
        if scan.host.error
    ]
    skipped = [item for item in result.skipped if not item.vanished]
    details = [_skipped(item) for item in skipped] + [_rule_error(e) for e in result.rule_errors]
    if len(details) > MAX_LINES:
        counts = [
            text
            for count, text in (
                (len(skipped), f"{plural(len(skipped), 'item')} skipped"),
                (len(result.rule_errors), plural(len(result.rule_errors), "rule error")),
            )
            if count
        ]
        where = ", ".join(str(p) for p in paths if p is not None) or "the report"
        lines.append(f"not audited: {', '.join(counts)}; listed in {where}")
    else:
        lines += details
    lines += [
        waiver_line(use.status, use.waiver) for use in result.waivers if use.status != "active"
    ]
    return lines


def waiver_line(status: str, waiver: Waiver) -> str:
    """A waiver that is expired or stale (STATUS), by its rule and where it was declared."""
    return f"{status} waiver for {waiver.rule} ({waiver.origin}, expires {waiver.expires})"


def _skipped(item) -> str:
    if item.domain is None:
        return f"skipped on {item.host}: {item.reason}"
    if item.snapshot is None:
        return f"skipped domain {item.domain} on {item.host}: {item.reason}"
    return f"skipped snapshot {item.domain}/{item.snapshot} on {item.host}: {item.reason}"


def _rule_error(error) -> str:
    if error.host is None:
        return f"rule {error.rule} error: {error.message}"
    where = "/".join(p for p in (error.domain, error.snapshot) if p)
    at = f"{error.host} {where}" if where else error.host
    return f"rule {error.rule} error on {at}: {error.message}"
