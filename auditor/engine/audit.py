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
        if not violations:  # the common case, by far
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


class Auditor:
    """The rules with their policy, ready to check one host's domains as they are read
    (from scanner threads: it holds no state that checking changes, only the contexts of the
    host it checked last, rebuilt by whichever thread finds them stale) and the host itself."""

    def __init__(self, rules: Sequence[Rule], now: datetime, policy: Policy) -> None:
        self.rules, self.now, self.policy = rules, now, policy
        self._by_code = {p.code: p for p in policy.rules}
        self._overrides = {
            r.code: self._by_code[r.code].severity
            for r in rules
            if self._by_code[r.code].severity != r.severity
        }
        self._scoped = {scope: [r for r in rules if r.scope == scope] for scope in SCOPES}
        self._last_contexts: tuple[str, Mapping | None, dict[str, Context]] | None = None

    def contexts(self, host: str, files: Mapping | None) -> dict[str, Context]:
        # Every domain of a host is checked with the same contexts: built once per host.
        last = self._last_contexts
        if last is not None and last[0] == host and last[1] is files:
            return last[2]
        contexts = {
            r.code: Context(
                host=host, files=files, params=self._by_code[r.code].params, now=self.now
            )
            for r in self.rules
        }
        self._last_contexts = (host, files, contexts)
        return contexts

    def domain(
        self, host: str, domain: Domain, files: Mapping | None
    ) -> tuple[list[Finding], list[RuleError]]:
        """Findings of the domain's snapshots, oldest first, then of the domain. FILES: the
        facts about the files the domain names (its share of the host's)."""
        return self._check(self._subjects([domain]), self.contexts(host, files))

    def host(self, scan: HostScan) -> tuple[list[Finding], list[RuleError]]:
        """Findings of the host's own rules (none for a host that could not be read)."""
        subjects = [] if scan.host.error else [(scan.host, self._scoped["host"])]
        return self._check(subjects, self.contexts(scan.host.uri, scan.files))

    def whole(self, scan: HostScan) -> tuple[list[Finding], list[RuleError]]:
        """The host, then each domain in the scan's order: what `audit` reports for it."""
        findings, errors = self.host(scan)
        subjects = self._subjects(scan.domains)
        more, failed = self._check(subjects, self.contexts(scan.host.uri, scan.files))
        return findings + more, errors + failed

    def _subjects(self, domains: Iterable[Domain]) -> list:
        subjects: list = []
        for domain in domains:
            subjects += [(s, self._scoped["snapshot"]) for s in domain.snapshots]
            subjects.append((domain, self._scoped["domain"]))
        return subjects

    def _check(self, subjects, contexts) -> tuple[list[Finding], list[RuleError]]:
        findings: list[Finding] = []
        errors: list[RuleError] = []
        for subject, applicable in subjects:
            found, failed = check(subject, applicable, contexts, self._overrides)
            findings.extend(found)
            errors.extend(failed)
        return findings, errors


def audit(
    scans: Iterable[HostScan],
    rules: Sequence[Rule],
    load_errors: Sequence[RuleError] = (),
    now: datetime | None = None,
    policy: Policy | None = None,
    audited: Mapping[int, tuple[list[Finding], list[RuleError]]] | None = None,
) -> ScanResult:
    """Findings for every host, domain and snapshot. `policy` gives each rule's effective
    severity and parameters (default: the rules' own); `now` is the clock for age checks.
    AUDITED: findings of hosts already checked while they were read, by position in SCANS."""
    auditor = Auditor(rules, now or datetime.now(UTC), policy or default_policy(rules))
    hosts = tuple(scans)
    findings: list[Finding] = []
    errors = list(load_errors)
    for index, scan in enumerate(hosts):
        found, failed = (audited or {}).get(index) or auditor.whole(scan)
        findings.extend(found)
        errors.extend(failed)
    return ScanResult(
        generated_at=auditor.now,
        hosts=hosts,
        findings=tuple(findings),
        rule_errors=tuple(errors),
        policy=auditor.policy,
    )
