"""The JSON report: a versioned contract for scripts (schema: auditor/schemas/report-v1.json)."""

from __future__ import annotations

import json
from datetime import datetime

from auditor import __version__
from auditor.model import ScanResult
from auditor.summary import summarize

SCHEMA_ID = "snapaudit/report/v1"


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def report_dict(result: ScanResult) -> dict:
    summary = summarize(result)
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
            {
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
                "disks": [
                    {
                        "name": d.name,
                        "snapshot": d.snapshot,
                        "type": d.storage.type if d.storage else None,
                        "format": d.storage.format if d.storage else None,
                        "source": d.storage.path if d.storage else None,
                        "device": d.device,
                        "readonly": d.readonly,
                    }
                    for d in s.disks
                ],
                "compliant": summary.is_compliant(s),
            }
            for s in result.snapshots
        ],
        "findings": [
            {
                "rule": f.rule,
                "name": f.name,
                "severity": f.severity.value,
                "host": f.host,
                "domain": f.domain,
                "snapshot": f.snapshot,
                "disk": f.disk,
                "message": f.message,
                "remediation": f.remediation,
            }
            for f in result.findings
        ],
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
    }


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


def _dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
