"""Runs rules over hosts, domains and snapshots: the pure middle of the pipeline."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime

from auditor.display import one_line
from auditor.model import (
    Domain,
    Finding,
    HostScan,
    Policy,
    RuleError,
    RulePolicy,
    ScanResult,
    Severity,
)
from auditor.rule import SCOPES, Context, Rule, Violation


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


class _Prepared(tuple):
    """A rule ready to run over a host's subjects: what every finding of it carries, worked
    out once per host rather than once per snapshot (the audit calls rules about a hundred
    thousand times on a large fleet)."""

    __slots__ = ()

    def __new__(cls, rule: Rule, context: Context, override: Severity | None):
        return tuple.__new__(
            cls,
            (rule.check, rule.code, rule.name, override, rule.severity, rule.remediation, context),
        )


def _run(subject, prepared, domain, uuid, snapshot, findings, errors) -> None:
    """Run the PREPARED rules over SUBJECT, adding to FINDINGS and ERRORS."""
    for check_, code, name, override, default, remediation, context in prepared:
        try:
            # A tuple, not a list: building it costs less, and this runs for every rule
            # and snapshot.
            violations = tuple(check_(subject, context))
        except Exception as exc:  # one faulty rule must not stop the scan
            errors.append(
                RuleError(code, f"raised {one_line(exc)}", context.host, domain, snapshot)
            )
            continue
        if not violations:  # the common case, by far
            continue
        host = context.host
        for v in violations:
            if wrong := _malformed(v):  # reported here, not as a crash in a reporter
                errors.append(RuleError(code, f"yielded {wrong}", host, domain, snapshot))
                continue
            findings.append(
                Finding(
                    rule=code,
                    name=name,
                    severity=override or v.severity or default,
                    host=host,
                    domain=domain,
                    snapshot=v.snapshot or snapshot or "",
                    disk=v.disk,
                    message=v.message,
                    remediation=remediation,
                    image=v.image,
                    domain_uuid=uuid,
                    tag=v.tag,
                )
            )


def _malformed(v: object) -> str | None:
    """What is wrong with a rule's violation V, or None."""
    if type(v) is not Violation:
        return f"{type(v).__name__}, not a Violation"
    if not isinstance(v.message, str):
        return f"a message of type {type(v.message).__name__}, not str"
    for field in (v.disk, v.image, v.snapshot, v.tag):
        if field is not None and not isinstance(field, str):
            return f"a {type(field).__name__} where a str or None belongs"
    if v.severity is not None and not isinstance(v.severity, Severity):
        return f"a severity of type {type(v.severity).__name__}, not Severity"
    return None


class Auditor:
    """The rules with their policy, ready to check one host's domains as they are read
    (from scanner threads: it holds no state that checking changes, only the rules prepared
    for the host it checked last, rebuilt by whichever thread finds them stale) and the host
    itself."""

    def __init__(self, rules: Sequence[Rule], now: datetime, policy: Policy) -> None:
        self.rules, self.now, self.policy = rules, now, policy
        self._by_code = {p.code: p for p in policy.rules}
        self._overrides = {
            r.code: self._by_code[r.code].severity
            for r in rules
            if self._by_code[r.code].severity != r.severity
        }
        self._last: tuple[str, Mapping | None, dict[str, list[_Prepared]]] | None = None

    def prepared(self, host: str, files: Mapping | None) -> dict[str, list[_Prepared]]:
        """The rules of each scope, ready to run over HOST's subjects. Every domain of a host
        is checked with the same contexts: built once per host."""
        last = self._last
        if last is not None and last[0] == host and last[1] is files:
            return last[2]
        by_scope: dict[str, list[_Prepared]] = {scope: [] for scope in SCOPES}
        for r in self.rules:
            context = Context(
                host=host, files=files, params=self._by_code[r.code].params, now=self.now
            )
            if r.scope in by_scope:  # a Rule built by hand with another scope never ran
                by_scope[r.scope].append(_Prepared(r, context, self._overrides.get(r.code)))
        self._last = (host, files, by_scope)
        return by_scope

    def domain(
        self, host: str, domain: Domain, files: Mapping | None
    ) -> tuple[list[Finding], list[RuleError]]:
        """Findings of the domain's snapshots, oldest first, then of the domain. FILES: the
        facts about the files the domain names (its share of the host's)."""
        return self._domains([domain], self.prepared(host, files))

    def host(self, scan: HostScan) -> tuple[list[Finding], list[RuleError]]:
        """Findings of the host's own rules (none for a host that could not be read)."""
        findings: list[Finding] = []
        errors: list[RuleError] = []
        if not scan.host.error:
            prepared = self.prepared(scan.host.uri, scan.files)["host"]
            _run(scan.host, prepared, "", "", None, findings, errors)
        return findings, errors

    def whole(self, scan: HostScan) -> tuple[list[Finding], list[RuleError]]:
        """The host, then each domain in the scan's order: what `audit` reports for it."""
        findings, errors = self.host(scan)
        more, failed = self._domains(scan.domains, self.prepared(scan.host.uri, scan.files))
        return findings + more, errors + failed

    @staticmethod
    def _domains(
        domains: Iterable[Domain], prepared: Mapping[str, list[_Prepared]]
    ) -> tuple[list[Finding], list[RuleError]]:
        """Each domain's snapshots, oldest first, then the domain."""
        findings: list[Finding] = []
        errors: list[RuleError] = []
        per_snapshot, per_domain = prepared["snapshot"], prepared["domain"]
        for domain in domains:
            for s in domain.snapshots:
                _run(s, per_snapshot, s.domain, s.domain_uuid, s.name, findings, errors)
            _run(domain, per_domain, domain.name, domain.uuid, None, findings, errors)
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
