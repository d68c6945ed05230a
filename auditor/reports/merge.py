"""Combining reports, typically one per hypervisor, into one fleet report.

Hosts are concatenated; every count is recomputed by the reporters from the merged model. Each
hypervisor usually audits itself as `qemu:///system`, so a URI found in more than one report is
told apart by the host's name: `qemu:///system#hv1.example.com`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from auditor.errors import UsageError
from auditor.model import BaselineOutcome, Policy, ScanResult, Waiver, WaiverStatus, WaiverUse

# A waiver's merged status: the first of these that any report gives it.
_PRECEDENCE: tuple[WaiverStatus, ...] = ("active", "expired", "stale")


class MergeError(UsageError):
    """Reports that cannot be merged, as one line."""


def merge_results(reports: Sequence[tuple[Path, ScanResult]]) -> ScanResult:
    """Merge (path, result) pairs; paths name the reports in errors and labels."""
    if not reports:
        raise MergeError("no reports to merge")
    counts: dict[str, int] = {}  # URI → how many reports have it
    for _, result in reports:
        for uri in {scan.host.uri for scan in result.hosts}:
            counts[uri] = counts.get(uri, 0) + 1
    results = [
        _relabel(result, {uri: _label(uri, result, path) for uri in _shared(result, counts)})
        for path, result in reports
    ]

    first_seen: dict[str, int] = {}  # host URI → the report that has it first
    for index, result in enumerate(results):
        for scan in result.hosts:
            uri = scan.host.uri
            if uri in first_seen:
                first = reports[first_seen[uri]][0]
                where = (
                    f"twice in {first}"
                    if first_seen[uri] == index
                    else f"in both {first} and {reports[index][0]}"
                )
                raise MergeError(f"host {uri} is {where}")
            first_seen[uri] = index

    load_errors = []  # the same plugin failing everywhere is one problem
    for result in results:
        for error in result.rule_errors:
            if error.host is not None or error not in load_errors:
                load_errors.append(error)
    durations = [r.duration for r in results if r.duration is not None]
    return ScanResult(
        generated_at=max(r.generated_at for r in results),
        hosts=tuple(h for r in results for h in r.hosts),
        findings=tuple(f for r in results for f in r.findings),
        rule_errors=tuple(load_errors),
        waivers=_waivers(results),
        baseline=_baseline(results),
        policy=_policy(results),
        duration=max(durations) if durations else None,  # hypervisors scan in parallel
    )


def _shared(result: ScanResult, counts: dict[str, int]) -> list[str]:
    return [s.host.uri for s in result.hosts if counts[s.host.uri] > 1]


def _label(uri: str, result: ScanResult, path: Path) -> str:
    hostname = next(s.host.hostname for s in result.hosts if s.host.uri == uri)
    return f"{uri}#{hostname or path.stem}"


def _relabel(result: ScanResult, labels: dict[str, str]) -> ScanResult:
    """The result with host URIs replaced by their labels, in every record that names one."""
    if not labels:
        return result

    def new(uri):
        return labels.get(uri, uri)

    hosts = tuple(
        replace(
            scan,
            host=replace(scan.host, uri=new(scan.host.uri)),
            domains=tuple(
                replace(
                    d,
                    host=new(d.host),
                    snapshots=tuple(replace(s, host=new(s.host)) for s in d.snapshots),
                )
                for d in scan.domains
            ),
            skipped=tuple(replace(s, host=new(s.host)) for s in scan.skipped),
        )
        for scan in result.hosts
    )
    return replace(
        result,
        hosts=hosts,
        findings=tuple(replace(f, host=new(f.host)) for f in result.findings),
        rule_errors=tuple(
            replace(e, host=new(e.host)) if e.host else e for e in result.rule_errors
        ),
    )


def _waivers(results: Sequence[ScanResult]) -> tuple[WaiverUse, ...]:
    """One entry per distinct waiver: active if it waived something anywhere, else expired if
    it expired anywhere, else stale; matches summed."""
    merged: dict[Waiver, WaiverUse] = {}
    for result in results:
        for use in result.waivers:
            known = merged.get(use.waiver)
            if known is None:
                merged[use.waiver] = use
                continue
            status = next(s for s in _PRECEDENCE if s in (known.status, use.status))
            merged[use.waiver] = WaiverUse(use.waiver, status, known.matched + use.matched)
    return tuple(merged.values())


def _baseline(results: Sequence[ScanResult]) -> BaselineOutcome | None:
    outcomes = [r.baseline for r in results if r.baseline is not None]
    if not outcomes:
        return None
    return BaselineOutcome(
        path=", ".join(dict.fromkeys(o.path for o in outcomes)),
        known=sum(o.known for o in outcomes),
        new=sum(o.new for o in outcomes),
        fixed=sum(o.fixed for o in outcomes),
    )


def _policy(results: Sequence[ScanResult]) -> Policy | None:
    """Every rule that ran anywhere; where hypervisors configured a rule differently, the
    first report's settings (each finding keeps the severity it was reported with)."""
    policies = [r.policy for r in results if r.policy is not None]
    if not policies:
        return None
    rules: dict = {}
    for policy in policies:
        for rule in policy.rules:
            rules.setdefault(rule.code, rule)
    sources = tuple(dict.fromkeys(s for p in policies for s in p.sources))
    return Policy(tuple(rules.values()), sources)
