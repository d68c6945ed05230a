"""Prometheus text exposition, for node_exporter's textfile collector (write it with `-o`, which
replaces the file atomically, into the collector's directory).

Every series is a gauge describing the last run. `host` is the connection URI as given, which
stays the same from run to run, even when a host cannot be reached.
"""

from __future__ import annotations

from collections import Counter

from auditor.model import ScanResult

HELP = {
    "snapaudit_findings": 'Findings of the last audit. suppressed="true": waived or in the '
    "baseline, so not failing the gate.",
    "snapaudit_snapshots": "Snapshots per domain.",
    "snapaudit_snapshot_age_seconds": "Age of each snapshot when the audit ran.",
    "snapaudit_scan_duration_seconds": "How long the last audit took.",
    "snapaudit_scan_success": "1 when the host was scanned and everything on it audited, else 0.",
    "snapaudit_last_run_timestamp_seconds": "When the last audit ran, in seconds since the epoch.",
}


def render(result: ScanResult, *, color: bool = False) -> str:
    findings = Counter(
        (f.host, f.domain, f.rule, f.severity.value, "true" if f.suppressed else "false")
        for f in result.findings
    )
    incomplete = {s.host for s in result.skipped if not s.vanished}
    incomplete |= {e.host for e in result.rule_errors}
    series: dict[str, list[tuple[dict[str, str], float]]] = {name: [] for name in HELP}
    for (host, domain, rule, severity, suppressed), count in findings.items():
        labels = {"host": host, "domain": domain, "rule": rule, "severity": severity}
        series["snapaudit_findings"].append((labels | {"suppressed": suppressed}, count))
    for scan in result.hosts:
        uri = scan.host.uri
        ok = scan.host.error is None and uri not in incomplete
        series["snapaudit_scan_success"].append(({"host": uri}, 1 if ok else 0))
        for domain in scan.domains:
            labels = {"host": uri, "domain": domain.name}
            series["snapaudit_snapshots"].append((labels, len(domain.snapshots)))
            for snap in domain.snapshots:
                if snap.created is not None:
                    age = (result.generated_at - snap.created).total_seconds()
                    series["snapaudit_snapshot_age_seconds"].append(
                        (labels | {"snapshot": snap.name}, age)
                    )
    if result.duration is not None:
        series["snapaudit_scan_duration_seconds"].append(({}, result.duration))
    series["snapaudit_last_run_timestamp_seconds"].append(({}, result.generated_at.timestamp()))

    lines = []
    for name, samples in series.items():
        if not samples:
            continue
        lines += [f"# HELP {name} {_escape_help(HELP[name])}", f"# TYPE {name} gauge"]
        lines += [f"{name}{_labels(labels)} {_number(value)}" for labels, value in samples]
    return "\n".join(lines) + "\n"


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels.items()) + "}"


def _escape_label(value: str) -> str:
    # The exposition format escapes exactly these three in label values.
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
