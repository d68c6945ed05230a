"""The HTML report: one self-contained page (inline CSS, no scripts, nothing fetched)."""

from __future__ import annotations

from collections import defaultdict
from importlib.resources import files

import jinja2

from auditor import __version__
from auditor.display import human_size
from auditor.model import ScanResult, Severity
from auditor.reports.diskfacts import disk_facts, memory_size
from auditor.reports.records import iso
from auditor.reports.summary import summarize


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(files("auditor.reports.templates"))),
        autoescape=True,  # every name and description comes from a host
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(result: ScanResult, *, color: bool = False) -> str:
    summary = summarize(result)
    # Findings by host and domain, then by what they name (a snapshot, or an image).
    grouped: dict[tuple[str, str], dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for finding in result.findings:
        grouped[(finding.host, finding.domain)][finding.snapshot_label].append(finding)
    hosts = []
    for scan in result.hosts:
        files = scan.files
        domains = []
        for domain in scan.domains:
            found = grouped.get((scan.host.uri, domain.name), {})
            rows = [
                {
                    "snapshot": snap,
                    "findings": found.get(snap.name, []),
                    "compliant": summary.is_compliant(snap),
                    "disks": [
                        (d, disk_facts(d, files) if files is not None else None) for d in snap.disks
                    ],
                    "memory_size": memory_size(snap, files) if files is not None else None,
                }
                for snap in domain.snapshots
            ]
            names = {s.name for s in domain.snapshots}
            about_images = [f for subject, fs in found.items() if subject not in names for f in fs]
            if rows or about_images:
                domains.append({"domain": domain, "rows": rows, "image_findings": about_images})
        about_host = [f for fs in grouped.get((scan.host.uri, ""), {}).values() for f in fs]
        hosts.append({"scan": scan, "domains": domains, "findings": about_host})
    template = _environment().get_template("report.html.j2")
    return template.render(
        result=result,
        summary=summary,
        hosts=hosts,
        severities=list(reversed(Severity)),
        iso=iso,
        size=human_size,
        version=__version__,
    )
