"""Runs rules over snapshots: the pure middle of the pipeline."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from auditor.errors import one_line
from auditor.model import Finding, HostScan, RuleError, ScanResult, Snapshot
from auditor.rule import Context, Rule


def check_snapshot(
    snapshot: Snapshot, rules: Sequence[Rule], context: Context
) -> tuple[list[Finding], list[RuleError]]:
    findings: list[Finding] = []
    errors: list[RuleError] = []
    for rule in rules:
        try:
            violations = list(rule.check(snapshot, context))
        except Exception as exc:  # one faulty rule must not stop the scan
            errors.append(
                RuleError(
                    rule.code,
                    f"raised {one_line(exc)}",
                    host=snapshot.host,
                    domain=snapshot.domain,
                    snapshot=snapshot.name,
                )
            )
            continue
        findings.extend(
            Finding(
                rule=rule.code,
                name=rule.name,
                severity=v.severity or rule.severity,
                host=snapshot.host,
                domain=snapshot.domain,
                snapshot=snapshot.name,
                disk=v.disk,
                message=v.message,
                remediation=rule.remediation,
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
        context = Context(host=scan.host.uri)
        for snapshot in scan.snapshots:
            found, failed = check_snapshot(snapshot, rules, context)
            findings.extend(found)
            errors.extend(failed)
    return ScanResult(
        generated_at=now or datetime.now(UTC),
        hosts=hosts,
        findings=tuple(findings),
        rule_errors=tuple(errors),
    )
