"""Reads a snapaudit JSON report (snapaudit/report/v1) back into a ScanResult, so that any
reporter can render it again and reports can be compared (`diff`) and combined (`merge`).

A report holds what the reporters show, not everything a scan saw: domains come from the
snapshots and findings that name them (or from the hosts' `domains` lists where a report has
them), and file facts only as the sizes and chain depths the report gives.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from datetime import UTC, date, datetime
from pathlib import Path

from auditor.display import one_line
from auditor.errors import UsageError
from auditor.inputs import read_json
from auditor.model import (
    BaselineOutcome,
    DiskSource,
    Domain,
    FileFacts,
    Finding,
    Host,
    HostScan,
    Policy,
    RuleError,
    RulePolicy,
    ScanResult,
    Severity,
    Skipped,
    Snapshot,
    SnapshotDisk,
    Waiver,
    WaiverUse,
)
from auditor.reports.json import SCHEMA_ID
from auditor.reports.validate import Invalid, check_report

HOST_FIELDS = tuple(f.name for f in dataclasses.fields(Host))


class ReportError(UsageError):
    """A file that is not a usable snapaudit report, as one line naming the file."""


def load_report(path: Path) -> ScanResult:
    data = read_json(path, ReportError, "snapaudit report")
    if not isinstance(data, dict) or "schema" not in data:
        raise ReportError(f'{path}: not a snapaudit report (no "schema": "{SCHEMA_ID}")')
    if data["schema"] != SCHEMA_ID:
        raise ReportError(
            f"{path}: unsupported report schema {data['schema']!r} (this snapaudit reads"
            f" {SCHEMA_ID})"
        )
    try:
        check_report(data)
        return parse_report(data)
    except Invalid as exc:
        raise ReportError(f"{path}: malformed snapaudit report: {exc}") from None
    except KeyError as exc:
        raise ReportError(f"{path}: malformed snapaudit report: missing {exc.args[0]!r}") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise ReportError(f"{path}: malformed snapaudit report: {one_line(exc)}") from None


def parse_report(data: dict) -> ScanResult:
    snapshots: dict[str, list[Snapshot]] = defaultdict(list)
    files: dict[str, dict[str, _Facts]] = defaultdict(dict)
    for record in data["snapshots"]:
        snapshot = _snapshot(record)
        snapshots[snapshot.host].append(snapshot)
        _collect_facts(files[snapshot.host], snapshot, record)
    uuids = {(s.host, s.domain): s.domain_uuid for found in snapshots.values() for s in found}
    findings = tuple(_finding(r, uuids) for r in data["findings"])
    skipped: dict[str, list[Skipped]] = defaultdict(list)
    for r in data.get("skipped", []):
        item = Skipped(r["host"], r["domain"], r["snapshot"], r["reason"], r["vanished"])
        skipped[item.host].append(item)

    hosts = []
    for record in data["hosts"]:
        host = Host(**{k: record[k] for k in HOST_FIELDS if k in record})
        hosts.append(
            HostScan(
                host=host,
                domains=_domains(host.uri, record, snapshots[host.uri], findings),
                skipped=tuple(skipped[host.uri]),
                files=_file_facts(files[host.uri]) if record.get("files_checked") else None,
            )
        )
    return ScanResult(
        generated_at=_time(data["generated_at"]),
        hosts=tuple(hosts),
        findings=findings,
        rule_errors=tuple(
            RuleError(r["rule"], r["message"], r["host"], r["domain"], r["snapshot"])
            for r in data.get("rule_errors", [])
        ),
        waivers=tuple(
            WaiverUse(_waiver(r), r["status"], r["matched"]) for r in data.get("waivers", [])
        ),
        baseline=_baseline(data.get("baseline")),
        policy=_policy(data.get("policy")),
        duration=data.get("duration"),
    )


def _time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _snapshot(r: dict) -> Snapshot:
    return Snapshot(
        host=r["host"],
        domain=r["domain"],
        domain_uuid=r["domain_uuid"],
        name=r["name"],
        state=r["state"],
        created=None if r["created"] is None else _time(r["created"]),
        parent=r["parent"],
        current=r["current"],
        description=r["description"],
        memory=r["memory"],
        memory_file=r.get("memory_file"),
        disks=tuple(_disk(d) for d in r["disks"]),
    )


def _disk(r: dict) -> SnapshotDisk:
    # A report gives each disk's storage: the overlay of an external snapshot, else the
    # source the snapshot captured.
    known = (r["type"], r["source"], r["format"]) != (None, None, None)
    storage = DiskSource(r["type"], r["source"], r["format"]) if known else None
    external = r["snapshot"] == "external"
    state = None
    if external and r.get("state_source"):
        state = DiskSource("file", r["state_source"], None)
    elif not external:
        state = storage
    return SnapshotDisk(
        name=r["name"],
        mode=r["snapshot"],
        overlay=storage if external else None,
        state_image=state,
        device=r["device"],
        readonly=r["readonly"],
    )


@dataclasses.dataclass
class _Facts:
    size: int | None = None
    depth: int | None = None  # images in the chain, itself included; None when unreadable


def _collect_facts(facts: dict[str, _Facts], snapshot: Snapshot, record: dict) -> None:
    """The sizes and chain depths the report gives, by path, for rebuilding FileFacts."""
    for disk, r in zip(snapshot.disks, record["disks"], strict=True):
        for source, size in (
            (disk.overlay, r.get("overlay_size")),
            (disk.state_image, r.get("state_size")),
        ):
            if source and source.path and size is not None:
                facts.setdefault(source.path, _Facts()).size = size
        storage = disk.storage
        if storage and storage.path and r.get("chain_depth") is not None:
            facts.setdefault(storage.path, _Facts()).depth = r["chain_depth"]
    if snapshot.memory_file and record.get("memory_size") is not None:
        facts.setdefault(snapshot.memory_file, _Facts()).size = record["memory_size"]


def _file_facts(facts: dict[str, _Facts]) -> dict[str, FileFacts]:
    # Reports show only a chain's depth, so the chain's images are not known by name.
    return {
        path: FileFacts(
            path=path,
            exists=True,
            size=f.size,
            error=None if f.depth else "chain not in the report",
            known_depth=f.depth,
        )
        for path, f in facts.items()
    }


def _domains(
    uri: str, record: dict, snapshots: list[Snapshot], findings: tuple[Finding, ...]
) -> tuple[Domain, ...]:
    names: dict[str, str] = {}  # name → UUID, in report order
    for domain in record.get("domains", []):
        names[domain["name"]] = domain["uuid"]
    for s in snapshots:
        names.setdefault(s.domain, s.domain_uuid)
    for f in findings:
        if f.host == uri and f.domain:
            names.setdefault(f.domain, f.domain_uuid)
    return tuple(
        Domain(uri, name, uuid, (), tuple(s for s in snapshots if s.domain == name))
        for name, uuid in names.items()
    )


def _finding(r: dict, uuids: dict[tuple[str, str], str]) -> Finding:
    snapshot, image, tag = r["snapshot"], r.get("image"), None
    # A finding about an image and no libvirt snapshot reports it as IMAGE or IMAGE@TAG
    # (libvirt snapshot names cannot hold the image path's "/").
    if image and snapshot == image:
        snapshot = ""
    elif image and snapshot.startswith(f"{image}@"):
        snapshot, tag = "", snapshot[len(image) + 1 :]
    return Finding(
        rule=r["rule"],
        name=r["name"],
        severity=Severity(r["severity"]),
        host=r["host"],
        domain=r["domain"],
        snapshot=snapshot,
        disk=r["disk"],
        message=r["message"],
        remediation=r["remediation"],
        image=image,
        domain_uuid=r.get("domain_uuid") or uuids.get((r["host"], r["domain"]), ""),
        waiver=None if r.get("waived") is None else _waiver(r["waived"]),
        baselined=r.get("baselined", False),
        tag=tag,
    )


def _waiver(r: dict) -> Waiver:
    return Waiver(
        rule=r["rule"],
        reason=r["reason"],
        owner=r["owner"],
        expires=date.fromisoformat(r["expires"]),
        host=r.get("host", "*"),
        domain=r.get("domain", "*"),
        snapshot=r.get("snapshot", "*"),
        origin=r.get("origin", ""),
    )


def _baseline(r: dict | None) -> BaselineOutcome | None:
    if r is None:
        return None
    return BaselineOutcome(r["path"], r["known"], r["new"], r["fixed"])


def _policy(r: dict | None) -> Policy | None:
    if r is None:
        return None
    rules = tuple(
        RulePolicy(p["code"], p["name"], Severity(p["severity"]), p["params"]) for p in r["rules"]
    )
    return Policy(rules, tuple(r["sources"]))
