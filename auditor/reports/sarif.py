"""The SARIF 2.1.0 report, for code-scanning dashboards (GitHub's upload-sarif and others).

One run; every rule that ran is a reportingDescriptor carrying its documentation; every finding
is a result located at the snapshot's libvirt metadata file (or at the image it is about), with
its stable fingerprint, waivers as `suppressions` and the baseline as `baselineState`.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping
from urllib.parse import quote

from auditor import __version__
from auditor.model import Finding, RulePolicy, ScanResult, Severity
from auditor.policy.fingerprint import fingerprint, hostnames
from auditor.reports.records import iso
from auditor.reports.summary import complete
from auditor.rule import DOC_SECTIONS

SCHEMA_URI = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)
FINGERPRINT_KEY = "snapaudit/v1"
LEVELS = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}
# Where libvirt's QEMU driver keeps each snapshot's metadata and each domain's definition.
SNAPSHOT_METADATA = "/var/lib/libvirt/qemu/snapshot/{domain}/{snapshot}.xml"
DOMAIN_DEFINITION = "/etc/libvirt/qemu/{domain}.xml"
HOST_CONFIGURATION = "/etc/libvirt/"
XML_SECTIONS = ("Noncompliant", "Compliant")


def render(result: ScanResult, *, color: bool = False) -> str:
    # default=str: rule parameters come from TOML, whose dates JSON has no type for.
    return json.dumps(sarif_log(result), indent=2, ensure_ascii=False, default=str) + "\n"


def sarif_log(result: ScanResult) -> dict:
    descriptors, index = _rules(result)
    names = hostnames(result)
    snapshots = {(s.host, s.domain, s.name) for s in result.snapshots}
    # Paths are on the hosts, not in any repository: each host's root is a base id of its own
    # (SARIF's originalUriBaseIds), which a viewer can map, and paths are relative to it.
    bases = {scan.host.uri: f"HOST{n}" for n, scan in enumerate(result.hosts, 1)}
    results = [
        _result(f, index[f.rule], fingerprint(f, names.get(f.host)), snapshots, result, bases)
        for f in result.findings
    ]
    run = {
        "tool": {
            "driver": {
                "name": "snapaudit",
                "version": __version__,
                "semanticVersion": __version__,
                "rules": descriptors,
            }
        },
        "originalUriBaseIds": {
            base: {"uri": "file:///", "description": {"text": f"the root directory of {uri}"}}
            for uri, base in bases.items()
        },
        "invocations": [_invocation(result)],
        "results": results,
    }
    return {"$schema": SCHEMA_URI, "version": "2.1.0", "runs": [run]}


def _rules(result: ScanResult) -> tuple[list[dict], dict[str, int]]:
    """A descriptor for each rule that ran, then for any rule that only appears in findings
    (a result that does not say which rules ran)."""
    ran = {p.code: p for p in (result.policy.rules if result.policy is not None else ())}
    for f in result.findings:
        ran.setdefault(f.rule, RulePolicy(f.rule, f.name, f.severity, {}))
    descriptors = [_descriptor(rule) for rule in ran.values()]
    return descriptors, {code: i for i, code in enumerate(ran)}


def _descriptor(rule: RulePolicy) -> dict:
    """The rule's documentation comes with the result's policy (see engine.with_rule_docs for
    reports read back from JSON)."""
    descriptor: dict[str, object]
    if rule.summary is None:
        summary = f"{rule.name} (documentation not available: the rule is not installed here)"
        descriptor = {
            "id": rule.code,
            "name": rule.name,
            "shortDescription": {"text": summary},
            "fullDescription": {"text": summary},
            "help": {"text": summary},
        }
    else:
        descriptor = {
            "id": rule.code,
            "name": rule.name,
            "shortDescription": {"text": rule.summary},
            "fullDescription": {
                "text": _paragraph(rule.sections.get("What it checks", "")) or rule.summary
            },
            "help": {
                "text": _help_text(rule.summary, rule.sections),
                "markdown": _help_markdown(rule.summary, rule.sections),
            },
        }
    configuration: dict = {"level": LEVELS[rule.severity]}
    if rule.params:
        configuration["parameters"] = dict(rule.params)
    descriptor["defaultConfiguration"] = configuration
    if rule.summary is not None and rule.tags:
        descriptor["properties"] = {"tags": list(rule.tags)}
    return descriptor


def _paragraph(text: str) -> str:
    return " ".join(text.split())


def _help_text(summary: str, sections: Mapping[str, str]) -> str:
    # The same layout as `snapaudit explain`.
    parts = [summary]
    for section in DOC_SECTIONS:
        body = sections.get(section)
        if body:
            indented = "\n".join(f"  {line}".rstrip() for line in body.splitlines())
            parts.append(f"{section}:\n{indented}")
    return "\n\n".join(parts)


def _help_markdown(summary: str, sections: Mapping[str, str]) -> str:
    parts = [summary]
    for section in DOC_SECTIONS:
        body = sections.get(section)
        if body:
            text = f"```xml\n{body}\n```" if section in XML_SECTIONS else _markdown_text(body)
            parts.append(f"## {section}\n\n{text}")
    return "\n\n".join(parts)


def _markdown_text(text: str) -> str:
    """Escape what Markdown would take for HTML (`the <memory> element`), except in code spans,
    where it shows as written."""
    parts = re.split(r"(`[^`]*`)", text)
    for i in range(0, len(parts), 2):
        parts[i] = html.escape(parts[i], quote=False)
    return "".join(parts)


def _result(
    finding: Finding,
    rule_index: int,
    print_: str,
    snapshots: set[tuple[str, str, str]],
    result: ScanResult,
    bases: dict[str, str],
) -> dict:
    record = {
        "ruleId": finding.rule,
        "ruleIndex": rule_index,
        "level": LEVELS[finding.severity],
        "message": {"text": finding.message},
        "locations": [_location(finding, snapshots, bases.get(finding.host))],
        "partialFingerprints": {FINGERPRINT_KEY: print_},
    }
    if finding.waiver is not None:
        w = finding.waiver
        record["suppressions"] = [
            {
                "kind": "external",
                "status": "accepted",
                "justification": w.reason,
                "properties": {
                    "owner": w.owner,
                    "expires": w.expires.isoformat(),
                    "origin": w.origin,
                },
            }
        ]
    if result.baseline is not None:
        record["baselineState"] = "unchanged" if finding.baselined else "new"
    return record


def _location(finding: Finding, snapshots: set[tuple[str, str, str]], base: str | None) -> dict:
    """The file a user would look at: the image a finding is about, else the snapshot's
    metadata file, else the domain's definition, else (a finding about the host) libvirt's
    configuration. Paths on the host, even a remote one (GitHub shows results only at files),
    relative to BASE, the host's root."""
    parts = [finding.host, finding.domain, finding.snapshot_label, finding.disk or ""]
    name = "/".join(p for p in parts if p)
    location: dict = {
        "logicalLocations": [
            # A finding about the host may have an empty host name too (a report's URI).
            {"name": next((p for p in reversed(parts) if p), ""), "fullyQualifiedName": name}
        ]
    }
    if finding.image:
        path = quote(finding.image, safe="/")
    elif (finding.host, finding.domain, finding.snapshot) in snapshots:
        path = SNAPSHOT_METADATA.format(
            domain=quote(finding.domain, safe=""), snapshot=quote(finding.snapshot, safe="")
        )
    elif finding.domain:
        path = DOMAIN_DEFINITION.format(domain=quote(finding.domain, safe=""))
    else:
        path = HOST_CONFIGURATION
    artifact = {"uri": path.lstrip("/"), "uriBaseId": base} if base else {"uri": path}
    location["physicalLocation"] = {
        "artifactLocation": artifact,
        "region": {"startLine": 1},  # the whole file: GitHub needs a line to show a result
    }
    return location


def _invocation(result: ScanResult) -> dict:
    """What could not be audited, as tool notifications; unused waivers as configuration
    notifications. executionSuccessful is false exactly when `scan` exits 3."""
    execution = [
        _notification("error", f"{scan.host.uri}: not scanned: {scan.host.error}")
        for scan in result.hosts
        if scan.host.error
    ]
    for item in result.skipped:
        if not item.vanished:
            where = "/".join(p for p in (item.host, item.domain, item.snapshot) if p)
            execution.append(_notification("error", f"{where}: skipped: {item.reason}"))
    for error in result.rule_errors:
        where = "/".join(p for p in (error.host, error.domain, error.snapshot) if p)
        text = f"rule {error.rule} error" + (f" on {where}" if where else "")
        notification = _notification("error", f"{text}: {error.message}")
        notification["associatedRule"] = {"id": error.rule}
        execution.append(notification)
    configuration = [
        _notification(
            "warning",
            f"{use.status} waiver for {use.waiver.rule} ({use.waiver.origin or 'no origin'},"
            f" expires {use.waiver.expires.isoformat()})",
        )
        for use in result.waivers
        if use.status != "active"
    ]
    invocation: dict = {
        "executionSuccessful": complete(result),
        "endTimeUtc": iso(result.generated_at),
    }
    if execution:
        invocation["toolExecutionNotifications"] = execution
    if configuration:
        invocation["toolConfigurationNotifications"] = configuration
    return invocation


def _notification(level: str, text: str) -> dict:
    return {"level": level, "message": {"text": text}}
