"""Prometheus text exposition, for node_exporter's textfile collector (write it with `-o`, which
replaces the file atomically, into the collector's directory).

Every series is a gauge describing the last run. `host` is the connection URI as given, which
stays the same from run to run, even when a host cannot be reached.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator

from auditor.model import ScanResult
from auditor.reports import in_pieces

HELP = {
    "snapaudit_findings": 'Findings of the last audit. suppressed="true": waived or in the '
    "baseline, so not failing the gate.",
    "snapaudit_snapshots": "Snapshots per domain.",
    "snapaudit_snapshot_age_seconds": "Age of each snapshot when the audit ran.",
    "snapaudit_scan_duration_seconds": "How long the last audit took.",
    "snapaudit_scan_success": "1 when the host was scanned and everything on it audited, else 0.",
    "snapaudit_last_run_timestamp_seconds": "When the last audit ran, in seconds since the epoch.",
}
_BATCH = 1000  # lines per piece of text


def render(result: ScanResult, *, color: bool = False) -> str:
    return "".join(chunks(result))


def chunks(result: ScanResult, *, color: bool = False) -> Iterator[str]:
    """The exposition in pieces of _BATCH lines, each series made as it is written: a
    fleet's snapshot ages are never all held at once."""
    return in_pieces(_lines(result), _BATCH)


def _lines(result: ScanResult) -> Iterator[str]:
    for name, samples in _series(result):
        first = next(samples, None)
        if first is None:
            continue
        yield f"# HELP {name} {_escape_help(HELP[name])}"
        yield f"# TYPE {name} gauge"
        for labels, value in itertools.chain((first,), samples):
            yield f"{name}{_labels(labels)} {_number(value)}"


def _series(result: ScanResult) -> Iterator[tuple[str, Iterator[tuple[dict, float]]]]:
    """Each series' name and its samples (labels, value), in the order of HELP."""
    findings = Counter(
        (f.host, f.domain, f.rule, f.severity.value, "true" if f.suppressed else "false")
        for f in result.findings
    )
    yield (
        "snapaudit_findings",
        (
            ({"host": h, "domain": d, "rule": r, "severity": s, "suppressed": x}, count)
            for (h, d, r, s, x), count in findings.items()
        ),
    )
    yield (
        "snapaudit_snapshots",
        (
            ({"host": scan.host.uri, "domain": domain.name}, len(domain.snapshots))
            for scan in result.hosts
            for domain in scan.domains
        ),
    )
    yield (
        "snapaudit_snapshot_age_seconds",
        (
            (
                {"host": scan.host.uri, "domain": domain.name, "snapshot": snap.name},
                (result.generated_at - snap.created).total_seconds(),
            )
            for scan in result.hosts
            for domain in scan.domains
            for snap in domain.snapshots
            if snap.created is not None
        ),
    )
    durations: tuple[tuple[dict[str, str], float], ...] = (
        () if result.duration is None else (({}, result.duration),)
    )
    yield "snapaudit_scan_duration_seconds", iter(durations)
    incomplete: set[str | None] = {s.host for s in result.skipped if not s.vanished}
    incomplete |= {e.host for e in result.rule_errors}
    yield (
        "snapaudit_scan_success",
        (
            (
                {"host": scan.host.uri},
                int(scan.host.error is None and scan.host.uri not in incomplete),
            )
            for scan in result.hosts
        ),
    )
    yield "snapaudit_last_run_timestamp_seconds", iter([({}, result.generated_at.timestamp())])


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
