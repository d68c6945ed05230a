"""Counts and verdicts that every report shows, computed once."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from operator import attrgetter, countOf

from auditor.model import Finding, ScanResult, Severity, Snapshot


def snapshot_key(item: Snapshot | Finding) -> tuple[str, str, str]:
    return (item.host, item.domain, item.snapshot if isinstance(item, Finding) else item.name)


@dataclass(frozen=True)
class Summary:
    hosts: int
    hosts_failed: int
    domains: int
    snapshots: int
    compliant: int
    noncompliant: int
    findings: dict[str, int]  # severity → count, every severity present
    noncompliant_keys: frozenset[tuple[str, str, str]]
    skipped: int  # listed but not audited; vanished objects are not counted
    rule_errors: int
    waived: int  # findings covered by an active waiver
    baselined: int  # findings already in the baseline
    # Snapshots compliant once waived and baselined findings are set aside.
    compliant_accepted: int
    complete: bool  # see complete()

    def is_compliant(self, snapshot: Snapshot) -> bool:
        """A snapshot is compliant when no error finding names it."""
        return (snapshot.host, snapshot.domain, snapshot.name) not in self.noncompliant_keys

    @property
    def compliant_share(self) -> float | None:
        return self.compliant / self.snapshots if self.snapshots else None

    @property
    def compliant_accepted_share(self) -> float | None:
        return self.compliant_accepted / self.snapshots if self.snapshots else None


def summarize(result: ScanResult) -> Summary:
    """The counts every report shows (a fleet's take a while: a report counts them once)."""
    findings = result.findings
    errors = [f for f in findings if f.severity is Severity.ERROR]
    bad = frozenset((f.host, f.domain, f.snapshot) for f in errors)  # as snapshot_key
    unaccepted = frozenset((f.host, f.domain, f.snapshot) for f in errors if not f.suppressed)
    snapshots = result.snapshots
    # The keys of noncompliant snapshots: only they can hold an unaccepted error.
    failing = list(filter(bad.__contains__, map(attrgetter("host", "domain", "name"), snapshots)))
    noncompliant = len(failing)
    severities = Counter(map(attrgetter("severity"), findings))
    summary = Summary(
        hosts=len(result.hosts),
        hosts_failed=sum(1 for h in result.hosts if h.host.error),
        domains=sum(len(h.domains) for h in result.hosts),
        snapshots=len(snapshots),
        compliant=len(snapshots) - noncompliant,
        noncompliant=noncompliant,
        findings={s.value: severities[s] for s in reversed(Severity)},
        noncompliant_keys=bad,
        skipped=sum(1 for item in result.skipped if not item.vanished),
        rule_errors=len(result.rule_errors),
        waived=len(findings) - countOf(map(attrgetter("waiver"), findings), None),
        baselined=sum(map(bool, map(attrgetter("baselined"), findings))),
        compliant_accepted=len(snapshots) - sum(map(unaccepted.__contains__, failing)),
        complete=complete(result),
    )
    return summary


def complete(result: ScanResult) -> bool:
    """True when every host, snapshot and rule was audited: a gate must not pass on anything
    it never saw."""
    failed = any(h.host.error for h in result.hosts)
    return not (failed or result.rule_errors or any(not s.vanished for s in result.skipped))


def fails(findings: Iterable[Finding], fail_on: str) -> bool:
    """The CI gate: whether a finding at or above FAIL_ON (a severity, or "never") is
    neither waived nor baselined."""
    if fail_on == "never":
        return False
    threshold = Severity(fail_on).rank
    return any(f.severity.rank >= threshold and not f.suppressed for f in findings)
