"""Runs rules over domains and snapshots: the pure middle of the pipeline."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from auditor.errors import one_line
from auditor.model import Domain, Finding, HostScan, RuleError, ScanResult, Snapshot
from auditor.rule import Context, Rule


def check(
    subject: Snapshot | Domain, rules: Sequence[Rule], context: Context
) -> tuple[list[Finding], list[RuleError]]:
    """Run the rules of the subject's scope (snapshot or domain) over it."""
    if isinstance(subject, Domain):
        scope, domain, uuid, snapshot = "domain", subject.name, subject.uuid, None
    else:
        scope, domain, uuid, snapshot = (
            "snapshot",
            subject.domain,
            subject.domain_uuid,
            subject.name,
        )
    findings: list[Finding] = []
    errors: list[RuleError] = []
    for rule in rules:
        if rule.scope != scope:
            continue
        try:
            violations = list(rule.check(subject, context))
        except Exception as exc:  # one faulty rule must not stop the scan
            errors.append(
                RuleError(rule.code, f"raised {one_line(exc)}", context.host, domain, snapshot)
            )
            continue
        findings.extend(
            Finding(
                rule=rule.code,
                name=rule.name,
                severity=v.severity or rule.severity,
                host=context.host,
                domain=domain,
                snapshot=v.subject or snapshot or "",
                disk=v.disk,
                message=v.message,
                remediation=rule.remediation,
                image=v.image,
                domain_uuid=uuid,
            )
            for v in violations
        )
    return findings, errors


def audit(
    scans: Iterable[HostScan],
    rules: Sequence[Rule],
    load_errors: Sequence[RuleError] = (),
    now: datetime | None = None,
) -> ScanResult:
    hosts = tuple(scans)
    findings: list[Finding] = []
    errors = list(load_errors)
    for scan in hosts:
        context = Context(host=scan.host.uri, files=scan.files)
        for domain in scan.domains:
            for subject in (*domain.snapshots, domain):
                found, failed = check(subject, rules, context)
                findings.extend(found)
                errors.extend(failed)
    return ScanResult(
        generated_at=now or datetime.now(UTC),
        hosts=hosts,
        findings=tuple(findings),
        rule_errors=tuple(errors),
    )
