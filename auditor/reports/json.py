"""The JSON report: a versioned contract for scripts (schema: reports/schemas/report-v1.json).

A fleet's report runs to hundreds of megabytes: it is made as a stream of pieces (`chunks`)
that a writer writes one by one, and its snapshot and finding records, nearly all of it, are
spelled out as text, the very text the encoder would make of them as dicts, at a fraction of
the cost."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from auditor import __version__
from auditor.model import FileFacts, ScanResult, Snapshot, SnapshotDisk
from auditor.policy.fingerprint import fingerprint, hostnames
from auditor.reports.diskfacts import disk_facts, memory_size
from auditor.reports.records import (
    dumps,
    encode_str,
    finding_record,
    finding_text,
    iso,
    waiver_record,
)
from auditor.reports.summary import Summary, summarize

SCHEMA_ID = "snapaudit/report/v1"

_dumps, _enc = dumps, encode_str
_BATCH = 1000  # records per piece of text: a few hundred kB


def render(result: ScanResult, *, color: bool = False) -> str:
    return "".join(chunks(result))


def report_dict(result: ScanResult) -> dict:
    """The report as plain data, every record a dict: what `chunks` spells out as text."""
    summary = summarize(result)
    sections = _sections(result, summary)
    sections["snapshots"] = [
        _snapshot(s, scan.files, summary.is_compliant(s))
        for scan in result.hosts
        for s in scan.snapshots
    ]
    names = hostnames(result)
    sections["findings"] = [
        finding_record(f, fingerprint(f, names.get(f.host))) for f in result.findings
    ]
    return sections


def chunks(result: ScanResult, *, color: bool = False) -> Iterator[str]:
    """The report's text, in pieces of about _BATCH records. Pretty at the top, one compact
    line per record below: readable and greppable."""
    pending: list[str] = []
    for index, (key, value) in enumerate(_sections(result, summarize(result)).items()):
        pending.append(f"{',' if index else '{'}\n  {_dumps(key)}: ")
        if isinstance(value, list):
            value = map(_dumps, value)
        elif not isinstance(value, Iterator):
            pending.append(_dumps(value))
            continue
        first = next(value, None)
        if first is None:
            pending.append("[]")
            continue
        pending.append(f"[\n    {first}")
        for text in value:
            pending.append(f",\n    {text}")
            if len(pending) >= _BATCH:
                yield "".join(pending)
                pending.clear()
        pending.append("\n  ]")
    pending.append("\n}\n")
    yield "".join(pending)


def _sections(result: ScanResult, summary: Summary) -> dict:
    """The report's keys in order; lists of records as lists of dicts, or as iterators of
    their text for the long ones."""
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
        "snapshots": _snapshot_texts(result, summary.noncompliant_keys),
        "findings": _finding_texts(result),
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


def _finding_texts(result: ScanResult) -> Iterator[str]:
    names = hostnames(result)
    for f in result.findings:
        mark = fingerprint(f, names.get(f.host))
        try:
            yield finding_text(f, mark)
        except TypeError:  # a value of a type the text does not spell: the encoder does
            yield _dumps(finding_record(f, mark))


def _snapshot_texts(result: ScanResult, noncompliant: frozenset) -> Iterator[str]:
    heads: dict[tuple, str] = {}  # the keys a domain's snapshots share, as text
    for scan in result.hosts:
        files = scan.files
        for s in scan.snapshots:
            compliant = (s.host, s.domain, s.name) not in noncompliant
            try:
                yield _snapshot_text(s, files, compliant, heads)
            except TypeError:  # a value of a type the text does not spell: the encoder does
                yield _dumps(_snapshot(s, files, compliant))


def _snapshot_text(
    s: Snapshot, files: Mapping[str, FileFacts] | None, compliant: bool, heads: dict
) -> str:
    """What the encoder makes of _snapshot(S, FILES, COMPLIANT); a TypeError for a value
    it does not spell."""
    domain = (s.host, s.domain, s.domain_uuid)
    head = heads.get(domain)
    if head is None:
        host, name, uuid = (_enc(v) for v in domain)
        head = heads[domain] = f'{{"host": {host}, "domain": {name}, "domain_uuid": {uuid}, '
    created, parent, description = iso(s.created), s.parent, s.description
    text = (
        f'{head}"name": {_enc(s.name)}, "state": {_enc(s.state)}, '
        f'"created": {"null" if created is None else _enc(created)}, '
        f'"parent": {"null" if parent is None else _enc(parent)}, '
        f'"current": {_bool(s.current)}, '
        f'"description": {"null" if description is None else _enc(description)}, '
        f'"memory": {_enc(s.memory)}, '
        f'"disks": [{", ".join([_disk_text(d, files) for d in s.disks])}], '
        f'"compliant": {"true" if compliant else "false"}'
    )
    if files is None:
        return text + "}"
    memory_file = s.memory_file
    return (
        f'{text}, "memory_file": {"null" if memory_file is None else _enc(memory_file)}, '
        f'"memory_size": {_int(memory_size(s, files))}}}'
    )


def _disk_text(d: SnapshotDisk, files: Mapping[str, FileFacts] | None) -> str:
    """What the encoder makes of _disk(D, FILES); a TypeError for a value it does not spell."""
    storage, device = d.storage, d.device
    if storage is None:
        where = '"type": null, "format": null, "source": null'
    else:
        kind, form, path = storage.type, storage.format, storage.path
        where = (
            f'"type": {"null" if kind is None else _enc(kind)}, '
            f'"format": {"null" if form is None else _enc(form)}, '
            f'"source": {"null" if path is None else _enc(path)}'
        )
    text = (
        f'{{"name": {_enc(d.name)}, "snapshot": {_enc(d.mode)}, {where}, '
        f'"device": {"null" if device is None else _enc(device)}, '
        f'"readonly": {_bool(d.readonly)}'
    )
    if d.overlay is not None:
        state = d.state_image.path if d.state_image else None
        text += f', "state_source": {"null" if state is None else _enc(state)}'
    if files is not None:
        text += "".join(f", {_enc(k)}: {_int(v)}" for k, v in disk_facts(d, files).items())
    return text + "}"


def _bool(value: object) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    raise TypeError(f"not a bool: {value!r}")


def _int(value: object) -> str:
    if value is None:
        return "null"
    if value.__class__ is int:
        return int.__repr__(value)
    raise TypeError(f"not an int: {value!r}")


def _snapshot(s: Snapshot, files: Mapping[str, FileFacts] | None, compliant: bool) -> dict:
    record: dict[str, object] = {
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
    record: dict[str, object] = {
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
