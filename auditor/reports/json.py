"""The JSON report: a versioned contract for scripts (schema: reports/schemas/report-v1.json)."""

from __future__ import annotations

import json
from collections.abc import Mapping

from auditor import __version__
from auditor.model import FileFacts, ScanResult, Snapshot, SnapshotDisk
from auditor.policy.fingerprint import fingerprint, hostnames
from auditor.reports.diskfacts import disk_facts, memory_size
from auditor.reports.records import finding_record, iso, waiver_record
from auditor.reports.summary import summarize

SCHEMA_ID = "snapaudit/report/v1"


def report_dict(result: ScanResult) -> dict:
    summary = summarize(result)
    names = hostnames(result)
    return {
        "schema": SCHEMA_ID,
        "generated_at": iso(result.generated_at),
        "tool": {"name": "snapaudit", "version": __version__},
        "hosts": [
            {
                "uri": h.host.uri,
                "hostname": h.host.hostname,
                "libvirt_version": h.host.libvirt_version,
                "hypervisor_version": h.host.hypervisor_version,
                "error": h.host.error,
                "files_checked": h.files is not None,
                "domains": [{"name": d.name, "uuid": d.uuid} for d in h.domains],
            }
            for h in result.hosts
        ],
        "summary": {
            "hosts": summary.hosts,
            "domains": summary.domains,
            "snapshots": summary.snapshots,
            "compliant": summary.compliant,
            "noncompliant": summary.noncompliant,
            "findings": summary.findings,
        },
        "snapshots": [
            _snapshot(s, scan.files, summary.is_compliant(s))
            for scan in result.hosts
            for s in scan.snapshots
        ],
        "findings": [finding_record(f, fingerprint(f, names.get(f.host))) for f in result.findings],
        "skipped": [
            {
                "host": s.host,
                "domain": s.domain,
                "snapshot": s.snapshot,
                "reason": s.reason,
                "vanished": s.vanished,
            }
            for s in result.skipped
        ],
        "rule_errors": [
            {
                "rule": e.rule,
                "message": e.message,
                "host": e.host,
                "domain": e.domain,
                "snapshot": e.snapshot,
            }
            for e in result.rule_errors
        ],
        "waivers": [
            waiver_record(use.waiver) | {"status": use.status, "matched": use.matched}
            for use in result.waivers
        ],
        "baseline": None
        if result.baseline is None
        else {
            "path": result.baseline.path,
            "known": result.baseline.known,
            "new": result.baseline.new,
            "fixed": result.baseline.fixed,
        },
        "policy": None
        if result.policy is None
        else {
            "rules": [
                {
                    "code": r.code,
                    "name": r.name,
                    "severity": r.severity.value,
                    "params": dict(r.params),
                }
                for r in result.policy.rules
            ],
            "sources": list(result.policy.sources),
        },
        "duration": result.duration,
    }


def _snapshot(s: Snapshot, files: Mapping[str, FileFacts] | None, compliant: bool) -> dict:
    record = {
        "host": s.host,
        "domain": s.domain,
        "domain_uuid": s.domain_uuid,
        "name": s.name,
        "state": s.state,
        "created": iso(s.created),
        "parent": s.parent,
        "current": s.current,
        "description": s.description,
        "memory": s.memory,
        "disks": [_disk(d, files) for d in s.disks],
        "compliant": compliant,
    }
    if files is not None:
        record["memory_file"] = s.memory_file
        record["memory_size"] = memory_size(s, files)
    return record


def _disk(d: SnapshotDisk, files: Mapping[str, FileFacts] | None) -> dict:
    storage = d.storage
    record = {
        "name": d.name,
        "snapshot": d.mode,
        "type": storage.type if storage else None,
        "format": storage.format if storage else None,
        "source": storage.path if storage else None,
        "device": d.device,
        "readonly": d.readonly,
    }
    if d.overlay is not None:  # the state image under an external overlay
        record["state_source"] = d.state_image.path if d.state_image else None
    if files is not None:
        record |= disk_facts(d, files)
    return record


def render(result: ScanResult, *, color: bool = False) -> str:
    """Pretty at the top, one compact line per record below: readable, greppable, and
    fast (json's C encoder only runs without indentation)."""
    parts = []
    for key, value in report_dict(result).items():
        if isinstance(value, list) and value:
            items = ",\n".join(f"    {_dumps(item)}" for item in value)
            text = f"[\n{items}\n  ]"
        else:
            text = _dumps(value)
        parts.append(f"  {_dumps(key)}: {text}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


# One encoder for every record: json.dumps() with options builds a new one per call.
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode
