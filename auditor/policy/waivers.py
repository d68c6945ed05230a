"""Waivers and baselines: findings that are reported but do not fail the gate."""

from __future__ import annotations

import fnmatch
import json
import re
from collections import Counter
from dataclasses import fields, replace
from datetime import date
from operator import attrgetter
from pathlib import Path

from auditor.errors import UsageError
from auditor.inputs import read_json
from auditor.model import BaselineOutcome, Finding, ScanResult, Waiver, WaiverUse
from auditor.policy.fingerprint import fingerprint, hostnames
from auditor.safefs import write_file

BASELINE_SCHEMA = "snapaudit/baseline/v1"


class BaselineError(UsageError):
    """A baseline file that cannot be used, as one line."""


# dataclasses.replace, for the two fields the policy steps set, at a fraction of its cost
# (it runs once per finding): a Finding is rebuilt from all its fields, in their order.
_FIELDS = [f.name for f in fields(Finding)]
_values = attrgetter(*_FIELDS)
_WAIVER, _BASELINED = _FIELDS.index("waiver"), _FIELDS.index("baselined")
assert all(f.init for f in fields(Finding))


def _with(finding: Finding, index: int, value: object) -> Finding:
    """FINDING with the field at INDEX (of _FIELDS) set to VALUE."""
    values = list(_values(finding))
    values[index] = value
    return Finding(*values)


def _glob(pattern: str):
    """fnmatchcase(NAME, PATTERN) as NAME -> bool, with the pattern compiled once: waivers
    are matched against every finding, and a large fleet has hundreds of thousands."""
    match = re.compile(fnmatch.translate(pattern)).match
    return lambda name: match(name) is not None


def apply_waivers(result: ScanResult, waivers: tuple[Waiver, ...], today: date) -> ScanResult:
    """Mark findings covered by an unexpired waiver; report what became of every waiver.
    An expired waiver waives nothing; one that matches nothing is stale."""
    if not waivers:
        return replace(result, findings=tuple(result.findings), waivers=())
    names = hostnames(result)
    # The waivers of each rule, in their order, each with its patterns compiled: a finding
    # is matched against its own rule's waivers only (the first test of _matches).
    by_rule: dict[str, list] = {}
    for i, w in enumerate(waivers):
        by_rule.setdefault(w.rule, []).append(
            (i, w, _glob(w.host), _glob(w.domain), _glob(w.snapshot), w.expires >= today)
        )
    matched: Counter[int] = Counter()
    findings = []
    for finding in result.findings:
        active = None
        hostname = names.get(finding.host)
        for i, w, host, domain, snapshot, unexpired in by_rule.get(finding.rule, ()):
            if (
                (host(finding.host) or (hostname and host(hostname)))
                and domain(finding.domain)
                and snapshot(finding.snapshot_label)
            ):
                matched[i] += 1
                if active is None and unexpired:
                    active = w
        findings.append(_with(finding, _WAIVER, active) if active else finding)
    uses = tuple(
        WaiverUse(
            w,
            "expired" if w.expires < today else ("active" if matched[i] else "stale"),
            matched[i],
        )
        for i, w in enumerate(waivers)
    )
    return replace(result, findings=tuple(findings), waivers=uses)


def write_baseline(result: ScanResult, path: Path) -> None:
    names = hostnames(result)
    entries = sorted(
        (
            {
                "fingerprint": fingerprint(f, names.get(f.host)),
                "rule": f.rule,
                "host": names.get(f.host) or f.host,
                "domain": f.domain,
                "snapshot": f.snapshot_label,
                "disk": f.disk,
            }
            for f in result.findings
        ),
        key=lambda e: (e["host"], e["domain"], e["snapshot"], e["rule"], e["disk"] or ""),
    )
    document = {"schema": BASELINE_SCHEMA, "findings": entries}
    write_file(path, json.dumps(document, indent=2, ensure_ascii=False) + "\n")


def read_baseline(path: Path) -> frozenset[str]:
    """The fingerprints a baseline file records."""
    document = read_json(path, BaselineError, "snapaudit baseline", trusted=True)
    if not isinstance(document, dict) or document.get("schema") != BASELINE_SCHEMA:
        raise BaselineError(f"{path}: not a snapaudit baseline (schema {BASELINE_SCHEMA})")
    entries = document.get("findings")
    if not isinstance(entries, list):
        raise BaselineError(f"{path}: malformed baseline: findings: expected an array")
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("fingerprint"), str):
            raise BaselineError(f"{path}: malformed baseline: findings[{index}].fingerprint")
    return frozenset(entry["fingerprint"] for entry in entries)


def apply_baseline(result: ScanResult, known: frozenset[str], path: Path) -> ScanResult:
    """Mark findings the baseline already has; count the new ones and the fixed ones."""
    names = hostnames(result)
    prints = [fingerprint(f, names.get(f.host)) for f in result.findings]
    findings = [
        f if f.baselined == (p in known) else _with(f, _BASELINED, p in known)
        for f, p in zip(result.findings, prints, strict=True)
    ]
    outcome = BaselineOutcome(
        path=str(path),
        known=sum(f.baselined for f in findings),
        new=sum(not f.baselined for f in findings),
        fixed=len(known - set(prints)),
    )
    return replace(result, findings=tuple(findings), baseline=outcome)
