"""The HTML report: one self-contained page (inline CSS, no scripts, nothing fetched).

Written for a fleet: a hosts table and a rules table first (each rule's remediation once),
then one section per host with its noncompliant snapshots first: collapsed for a fleet, open
for a single host (a screenshot or a mailed page shows its snapshots). Sections collapse
with <details> alone, and print expanded; rows carry little markup so that 10,000 snapshots
stay a page a mail client and a browser open quickly.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from importlib.resources import files
from typing import TypedDict

import jinja2
from markupsafe import Markup, escape

from auditor import __version__
from auditor.display import human_size, plural
from auditor.model import Finding, HostScan, ScanResult, Severity, Snapshot, SnapshotDisk
from auditor.reports.diskfacts import disk_facts, memory_size
from auditor.reports.records import iso
from auditor.reports.summary import Summary, summarize

_CODE_SPAN = re.compile(r"`([^`]+)`")


def code_spans(text: str | None) -> Markup:
    """Remediation text as HTML: escaped first, then each `code` span set in <code>. No other
    Markdown; a lone backtick stays as it is."""
    return Markup(_CODE_SPAN.sub(r"<code>\1</code>", str(escape(text or ""))))


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(files("auditor.reports.templates"))),
        autoescape=True,  # every name and description comes from a host
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["code_spans"] = code_spans
    env.filters["plural"] = plural
    return env


def render(result: ScanResult, *, color: bool = False) -> str:
    summary = summarize(result)
    by_host: dict[str, list[Finding]] = defaultdict(list)
    for finding in result.findings:
        by_host[finding.host].append(finding)
    incomplete = {e.host for e in result.rule_errors if e.host}
    incomplete |= {s.host for s in result.skipped if not s.vanished}
    hosts = [
        _host(scan, by_host.get(scan.host.uri, []), summary, scan.host.uri not in incomplete)
        for scan in result.hosts
    ]
    template = _environment().get_template("report.html.j2")
    return template.render(
        result=result,
        summary=summary,
        hosts=hosts,
        rules=_rules(result.findings),
        severities=list(reversed(Severity)),
        iso=iso,
        size=human_size,
        version=__version__,
    )


class _Row(TypedDict):
    """A snapshot in its host's section."""

    domain: str
    snapshot: Snapshot
    findings: Sequence[Finding]
    compliant: bool
    disks: list[tuple[SnapshotDisk, dict[str, int | None] | None]]  # with their sizes, if known
    memory_size: int | None


def _host(scan: HostScan, found: list[Finding], summary: Summary, complete: bool) -> dict:
    """One host's section: its snapshots, noncompliant first, each with its findings."""
    by_subject: dict[tuple[str, str], list[Finding]] = defaultdict(list)
    for finding in found:
        by_subject[(finding.domain, finding.snapshot_label)].append(finding)
    files = scan.files
    rows: list[_Row] = []
    named: set[tuple[str, str]] = set()
    for domain in scan.domains:
        for snap in domain.snapshots:
            named.add((domain.name, snap.name))
            rows.append(
                {
                    "domain": domain.name,
                    "snapshot": snap,
                    "findings": by_subject.get((domain.name, snap.name), ()),
                    "compliant": summary.is_compliant(snap),
                    "disks": [
                        (d, disk_facts(d, files) if files is not None else None) for d in snap.disks
                    ],
                    "memory_size": memory_size(snap, files) if files is not None else None,
                }
            )
    rows.sort(key=lambda row: row["compliant"])  # stable: noncompliant first, order kept
    compliant = sum(row["compliant"] for row in rows)
    counts = {sev.value: 0 for sev in Severity}
    for finding in found:
        counts[finding.severity.value] += 1
    return {
        "scan": scan,
        "rows": rows,
        "compliant": compliant,
        "share": compliant / len(rows) if rows else None,
        "counts": counts,
        "complete": complete and scan.host.error is None,
        "findings": [f for f in found if not f.domain],  # about the host itself
        # About an image or a domain rather than one of libvirt's snapshots.
        "other_findings": [
            f for f in found if f.domain and (f.domain, f.snapshot_label) not in named
        ],
    }


def _rules(findings: tuple[Finding, ...]) -> list[dict]:
    """Per rule with findings: counts, what it touched, and its remediation once."""
    rules: dict[str, dict] = {}
    for f in findings:
        entry = rules.get(f.rule)
        if entry is None:
            entry = rules[f.rule] = {
                "code": f.rule,
                "name": f.name,
                "severity": f.severity,
                "remediation": f.remediation,
                "findings": 0,
                "accepted": 0,
                "hosts": set(),
                "domains": set(),
            }
        entry["findings"] += 1
        entry["accepted"] += f.suppressed
        entry["hosts"].add(f.host)
        if f.domain:
            entry["domains"].add((f.host, f.domain))
        if f.severity.rank > entry["severity"].rank:  # merged hosts may configure it apart
            entry["severity"] = f.severity
    return sorted(rules.values(), key=lambda r: (-r["severity"].rank, r["code"]))
