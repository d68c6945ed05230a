"""The text report, for terminals and CI logs: one line per finding, then a summary line."""

from __future__ import annotations

from collections.abc import Iterator

from auditor.display import clean, plural
from auditor.model import ScanResult, Severity
from auditor.reports import in_pieces
from auditor.reports.summary import summarize

_COLORS = {Severity.ERROR: "31", Severity.WARNING: "33", Severity.INFO: "36"}
_MAX_COLUMN = 48
_BATCH = 1000  # lines per piece of text


def render(result: ScanResult, *, color: bool = False) -> str:
    return "".join(chunks(result, color=color))


def chunks(result: ScanResult, *, color: bool = False) -> Iterator[str]:
    """The report's lines, in pieces of _BATCH lines."""
    return in_pieces(_lines(result, color), _BATCH)


def _lines(result: ScanResult, color: bool) -> Iterator[str]:
    def paint(code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if color else text

    rows = [
        (
            clean(f.host),
            clean(f"{f.domain}/{f.snapshot_label}"),
            clean(f.rule),
            f.severity,
            clean(f.message) + _accepted(f),
        )
        for f in result.findings
    ]
    host_width = min(max((len(r[0]) for r in rows), default=0), _MAX_COLUMN)
    where_width = min(max((len(r[1]) for r in rows), default=0), _MAX_COLUMN)
    for host, where, code, severity, message in rows:
        label = paint(_COLORS[severity], f"{severity.value:<7}")
        yield f"{host:<{host_width}}  {where:<{where_width}}  {code} {label}  {message}"

    for scan in result.hosts:
        if scan.host.error:
            yield paint("1;31", f"{clean(scan.host.uri)}: not scanned: {clean(scan.host.error)}")
    for item in result.skipped:
        where = "/".join(clean(p) for p in (item.domain, item.snapshot) if p is not None)
        yield f"{clean(item.host)}  {where}  skipped: {clean(item.reason)}"
    for error in result.rule_errors:
        where = "/".join(clean(p) for p in (error.domain, error.snapshot) if p is not None)
        at = f" on {clean(error.host)} {where}" if error.host else ""
        yield paint("1;31", f"rule {clean(error.rule)} error{at}: {clean(error.message)}")

    for use in result.waivers:
        if use.status != "active":
            w = use.waiver
            yield (
                f"{clean(use.status)} waiver: {clean(w.rule)} host={clean(w.host)}"
                f" domain={clean(w.domain)} snapshot={clean(w.snapshot)}"
                f" (expires {w.expires}, {clean(w.owner)}, {clean(w.origin)}):"
                f" matched {use.matched}"
            )
    yield summary_line(result)


def summary_line(result: ScanResult) -> str:
    s = summarize(result)
    counts = ", ".join(f"{s.findings[sev.value]} {sev.value}" for sev in reversed(Severity))
    text = (
        f"{plural(s.hosts, 'host')}, {plural(s.domains, 'domain')}, "
        f"{plural(s.snapshots, 'snapshot')}: {s.compliant} compliant, "
        f"{s.noncompliant} noncompliant; findings: {counts}"
    )
    accepted = [
        part
        for count, part in (
            (s.waived, f"{s.waived} waived"),
            (s.baselined, f"{s.baselined} baselined"),
        )
        if count
    ]
    if result.baseline is not None:
        accepted.append(f"{result.baseline.fixed} fixed since the baseline")
    if accepted:
        text += f" ({', '.join(accepted)})"
    incomplete = [
        part
        for count, part in (
            (s.hosts_failed, f"{plural(s.hosts_failed, 'host')} not scanned"),
            (s.skipped, f"{plural(s.skipped, 'item')} skipped"),
            (s.rule_errors, plural(s.rule_errors, "rule error")),
        )
        if count
    ]
    return text + (f"; incomplete: {', '.join(incomplete)}" if incomplete else "")


def _accepted(f) -> str:
    if f.waiver is not None:
        return f"  [waived until {f.waiver.expires}: {clean(f.waiver.reason)}]"
    return "  [baselined]" if f.baselined else ""
