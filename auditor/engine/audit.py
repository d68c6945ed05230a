"""Runs rules over hosts, domains and snapshots: the pure middle of the pipeline."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime

from auditor.errors import one_line
from auditor.model import (
    Domain,
    Finding,
    Host,
    HostScan,
    Policy,
    RuleError,
    RulePolicy,
    ScanResult,
    Severity,
    Snapshot,
)
from auditor.rule import SCOPES, Context, Rule


def default_policy(rules: Sequence[Rule]) -> Policy:
    return Policy(tuple(RulePolicy(r.code, r.name, r.severity, dict(r.params)) for r in rules))


def check(
    subject: Snapshot | Domain | Host,
    rules: Sequence[Rule],
    contexts: Mapping[str, Context],
    overrides: Mapping[str, Severity],
) -> tuple[list[Finding], list[RuleError]]:
    """Run RULES (all of the subject's scope: snapshot, domain or host) over the subject.
    A configured severity (OVERRIDES, by rule code) replaces every severity a rule reports."""
    if isinstance(subject, Snapshot):
        domain, uuid, snapshot = subject.domain, subject.domain_uuid, subject.name
    elif isinstance(subject, Domain):
        domain, uuid, snapshot = subject.name, subject.uuid, None
    else:
        domain, uuid, snapshot = "", "", None
    findings: list[Finding] = []
    errors: list[RuleError] = []
    for rule in rules:
        context = contexts[rule.code]
        try:
            violations = list(rule.check(subject, context))
        except Exception as exc:  # one faulty rule must not stop the scan
            errors.append(
                RuleError(rule.code, f"raised {one_line(exc)}", context.host, domain, snapshot)
            )
            continue
        override = overrides.get(rule.code)
        findings.extend(
            Finding(
                rule=rule.code,
                name=rule.name,
                severity=override or v.severity or rule.severity,
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
    policy: Policy | None = None,
) -> ScanResult:
    """Findings for every host, domain and snapshot. `policy` gives each rule's effective
    severity and parameters (default: the rules' own); `now` is the clock for age checks."""
    now = now or datetime.now(UTC)
    policy = policy or default_policy(rules)
    by_code = {p.code: p for p in policy.rules}
    overrides = {
        r.code: by_code[r.code].severity for r in rules if by_code[r.code].severity != r.severity
    }
    scoped = {scope: [r for r in rules if r.scope == scope] for scope in SCOPES}
    hosts = tuple(scans)
    findings: list[Finding] = []
    errors = list(load_errors)
    for scan in hosts:
        base = Context(host=scan.host.uri, files=scan.files, now=now)
        contexts = {r.code: dataclasses.replace(base, params=by_code[r.code].params) for r in rules}
        subjects = [] if scan.host.error else [(scan.host, scoped["host"])]
        for domain in scan.domains:
            subjects += [(s, scoped["snapshot"]) for s in domain.snapshots]
            subjects.append((domain, scoped["domain"]))
        for subject, applicable in subjects:
            found, failed = check(subject, applicable, contexts, overrides)
            findings.extend(found)
            errors.extend(failed)
    return ScanResult(
        generated_at=now,
        hosts=hosts,
        findings=tuple(findings),
        rule_errors=tuple(errors),
        policy=policy,
    )
