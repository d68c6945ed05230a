"""The HTML report: one self-contained page (inline CSS, no scripts, nothing fetched)."""

from __future__ import annotations

from collections import defaultdict
from importlib.resources import files

import jinja2

from auditor import __version__
from auditor.diskfacts import disk_facts, memory_size
from auditor.model import ScanResult, Severity
from auditor.reporters.json import iso
from auditor.summary import snapshot_key, summarize


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(files("auditor.templates"))),
        autoescape=True,  # every name and description comes from a host
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(result: ScanResult, *, color: bool = False) -> str:
    summary = summarize(result)
    findings = defaultdict(list)
    for finding in result.findings:
        findings[(finding.host, finding.domain, finding.snapshot)].append(finding)
    hosts = []
    for scan in result.hosts:
        files = scan.files
        domains = []
        for domain in scan.domains:
            names = {s.name for s in domain.snapshots}
            rows = [
                {
                    "snapshot": snap,
                    "findings": findings[snapshot_key(snap)],
                    "compliant": summary.is_compliant(snap),
                    "disks": [
                        (d, disk_facts(d, files) if files is not None else None) for d in snap.disks
                    ],
                    "memory_size": memory_size(snap, files) if files is not None else None,
                }
                for snap in domain.snapshots
            ]
            about_images = [
                f
                for (host, name, subject), found in findings.items()
                if host == scan.host.uri and name == domain.name and subject not in names
                for f in found
            ]
            if rows or about_images:
                domains.append({"domain": domain, "rows": rows, "image_findings": about_images})
        hosts.append({"scan": scan, "domains": domains})
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


def human_size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")
