"""Waivers and baselines: findings that are reported but do not fail the gate."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from datetime import date
from fnmatch import fnmatchcase
from pathlib import Path

from auditor.inputs import read_json
from auditor.model import BaselineOutcome, Finding, ScanResult, Waiver, WaiverUse
from auditor.policy.fingerprint import fingerprint, hostnames
from auditor.safefs import write_file

BASELINE_SCHEMA = "snapaudit/baseline/v1"


class BaselineError(ValueError):
    """A baseline file that cannot be used, as one line."""


def _matches(waiver: Waiver, finding: Finding, hostname: str | None) -> bool:
    hosts = [finding.host] + ([hostname] if hostname else [])
    return (
        waiver.rule == finding.rule
        and any(fnmatchcase(h, waiver.host) for h in hosts)
        and fnmatchcase(finding.domain, waiver.domain)
        and fnmatchcase(finding.snapshot_label, waiver.snapshot)
    )


def apply_waivers(result: ScanResult, waivers: tuple[Waiver, ...], today: date) -> ScanResult:
    """Mark findings covered by an unexpired waiver; report what became of every waiver.
    An expired waiver waives nothing; one that matches nothing is stale."""
    names = hostnames(result)
    matched: Counter[int] = Counter()
    findings = []
    for finding in result.findings:
        hits = [i for i, w in enumerate(waivers) if _matches(w, finding, names.get(finding.host))]
        matched.update(hits)
        active = next((waivers[i] for i in hits if waivers[i].expires >= today), None)
        findings.append(replace(finding, waiver=active) if active else finding)
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
    document = read_json(path, BaselineError, "snapaudit baseline")
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
        replace(f, baselined=p in known) for f, p in zip(result.findings, prints, strict=True)
    ]
    outcome = BaselineOutcome(
        path=str(path),
        known=sum(f.baselined for f in findings),
        new=sum(not f.baselined for f in findings),
        fixed=len(known - set(prints)),
    )
    return replace(result, findings=tuple(findings), baseline=outcome)
