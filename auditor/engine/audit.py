"""Runs rules over hosts, domains and snapshots: the pure middle of the pipeline."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime

from auditor.display import one_line
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


def policy_for(rule: Rule, severity: Severity, params: Mapping[str, object]) -> RulePolicy:
    """How RULE runs, with its documentation for the reporters that describe rules."""
    return _documented(RulePolicy(rule.code, rule.name, severity, params), rule)


def default_policy(rules: Sequence[Rule]) -> Policy:
    return Policy(tuple(policy_for(r, r.severity, dict(r.params)) for r in rules))


def with_rule_docs(result: ScanResult, rules: Sequence[Rule]) -> ScanResult:
    """RESULT with the documentation of the installed RULES in its policy, for describing the
    rules of a report read back from JSON (which carries no documentation). A result that does
    not say which rules ran is taken to have run every installed rule; a rule that only its
    findings name gets an entry too (documented if it is installed here)."""
    installed = {r.code: r for r in rules}
    if result.policy is None:
        policy = default_policy(rules)
    else:
        policy = dataclasses.replace(
            result.policy,
            rules=tuple(
                _documented(p, installed[p.code]) if p.code in installed else p
                for p in result.policy.rules
            ),
        )
    listed = {p.code for p in policy.rules}
    extra: list[RulePolicy] = []
    for f in result.findings:
        if f.rule in listed:
            continue
        listed.add(f.rule)
        rule = installed.get(f.rule)
        if rule is None:
            extra.append(RulePolicy(f.rule, f.name, f.severity, {}))
        else:
            extra.append(_documented(RulePolicy(f.rule, f.name, rule.severity, rule.params), rule))
    return dataclasses.replace(
        result, policy=dataclasses.replace(policy, rules=policy.rules + tuple(extra))
    )


def _documented(policy: RulePolicy, rule: Rule) -> RulePolicy:
    return dataclasses.replace(
        policy, summary=rule.summary, sections=dict(rule.sections), tags=rule.tags
    )


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
                snapshot=v.snapshot or snapshot or "",
                disk=v.disk,
                message=v.message,
                remediation=rule.remediation,
                image=v.image,
                domain_uuid=uuid,
                tag=v.tag,
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
