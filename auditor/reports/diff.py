"""What changed between two reports: findings matched by their stable fingerprint.

A finding of the old report is *fixed* only when the new report audited what it was about. If
the new report could not scan its host, or skipped its snapshot or domain, it is *unverified*:
a host that was unreachable tonight has not been fixed.
"""

from __future__ import annotations

import json
from collections import defaultdict, deque
from dataclasses import dataclass

from auditor.display import clean
from auditor.model import Finding, ScanResult
from auditor.policy.fingerprint import fingerprint, hostnames
from auditor.reports.records import DIFF_KEYS, finding_record, iso

SCHEMA_ID = "snapaudit/diff/v1"


@dataclass(frozen=True)
class Entry:
    fingerprint: str
    finding: Finding  # as the new report has it; for fixed and unverified, as the old one had it


@dataclass(frozen=True)
class Diff:
    old: ScanResult
    new: ScanResult
    added: tuple[Entry, ...]
    fixed: tuple[Entry, ...]
    unchanged: tuple[Entry, ...]
    unverified: tuple[Entry, ...]


def _entries(result: ScanResult) -> list[Entry]:
    names = hostnames(result)
    return [Entry(fingerprint(f, names.get(f.host)), f) for f in result.findings]


def diff_reports(old: ScanResult, new: ScanResult) -> Diff:
    old_entries = _entries(old)
    pending: dict[str, deque[int]] = defaultdict(deque)  # fingerprint → unmatched old entries
    for index, entry in enumerate(old_entries):
        pending[entry.fingerprint].append(index)
    added, unchanged = [], []
    for entry in _entries(new):
        # One to one, so that a finding reported twice is matched twice.
        if pending[entry.fingerprint]:
            pending[entry.fingerprint].popleft()
            unchanged.append(entry)
        else:
            added.append(entry)

    # What the new report did not audit, by host identity (host name, else URI).
    old_names, new_names = hostnames(old), hostnames(new)
    scanned = {new_names.get(s.host.uri) or s.host.uri for s in new.hosts if not s.host.error}
    skipped = {
        (new_names.get(s.host) or s.host, s.domain, s.snapshot)
        for s in new.skipped
        if not s.vanished
    }
    fixed: list[Entry] = []
    unverified: list[Entry] = []
    for index in sorted(i for indices in pending.values() for i in indices):
        entry = old_entries[index]
        f = entry.finding
        host = old_names.get(f.host) or f.host
        wheres = ((host, None, None), (host, f.domain, None), (host, f.domain, f.snapshot_label))
        audited = host in scanned and not any(w in skipped for w in wheres)
        (fixed if audited else unverified).append(entry)
    return Diff(old, new, tuple(added), tuple(fixed), tuple(unchanged), tuple(unverified))


def render_text(diff: Diff) -> str:
    rows = [
        (label, e.finding)
        for label, entries in (("new", diff.added), ("fixed", diff.fixed))
        for e in entries
    ] + [("unverified", e.finding) for e in diff.unverified]
    lines = []
    for label, f in rows:
        where = clean(f"{f.domain}/{f.snapshot_label}" if f.domain else "(host)")
        disk = f" [{clean(f.disk)}]" if f.disk else ""
        note = " (waived)" if f.waiver else " (baselined)" if f.baselined else ""
        lines.append(
            f"{label:<10}  {clean(f.host)}  {where}{disk}  {clean(f.rule)} {f.severity.value}"
            f"  {clean(f.message)}{note}"
        )
    lines.append(
        f"{len(diff.added)} new, {len(diff.fixed)} fixed, {len(diff.unchanged)} unchanged, "
        f"{len(diff.unverified)} unverified (not audited in the new report)"
    )
    return "\n".join(lines) + "\n"


def render_json(diff: Diff) -> str:
    document = {
        "schema": SCHEMA_ID,
        "old_generated_at": iso(diff.old.generated_at),
        "new_generated_at": iso(diff.new.generated_at),
        "summary": {
            "new": len(diff.added),
            "fixed": len(diff.fixed),
            "unchanged": len(diff.unchanged),
            "unverified": len(diff.unverified),
        },
        "new": [_record(e) for e in diff.added],
        "fixed": [_record(e) for e in diff.fixed],
        "unchanged": [_record(e) for e in diff.unchanged],
        "unverified": [_record(e) for e in diff.unverified],
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _record(entry: Entry) -> dict:
    return finding_record(entry.finding, entry.fingerprint, DIFF_KEYS)
