"""The HTML report: one self-contained page (inline CSS, no scripts, nothing fetched)."""

from __future__ import annotations

from collections import defaultdict
from importlib.resources import files

import jinja2

from auditor import __version__
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
        findings[snapshot_key(finding)].append(finding)
    hosts = []
    for scan in result.hosts:
        domains: dict[str, list] = {}
        for snap in scan.snapshots:
            domains.setdefault(snap.domain, []).append(
                {
                    "snapshot": snap,
                    "findings": findings[snapshot_key(snap)],
                    "compliant": summary.is_compliant(snap),
                }
            )
        hosts.append({"scan": scan, "domains": domains})
    template = _environment().get_template("report.html.j2")
    return template.render(
        result=result,
        summary=summary,
        hosts=hosts,
        severities=list(reversed(Severity)),
        iso=iso,
        version=__version__,
    )
