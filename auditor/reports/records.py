"""Records that more than one JSON document writes: times, findings and waivers."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from operator import attrgetter

from auditor.model import Finding, Waiver

# A finding's keys in the report (snapaudit/report/v1) and in a diff (snapaudit/diff/v1).
REPORT_KEYS = (
    "rule",
    "name",
    "severity",
    "host",
    "domain",
    "snapshot",
    "disk",
    "message",
    "remediation",
    "image",
    "domain_uuid",
    "fingerprint",
    "waived",
    "baselined",
)
DIFF_KEYS = (
    "fingerprint",
    "rule",
    "name",
    "severity",
    "host",
    "domain",
    "snapshot",
    "disk",
    "message",
    "suppressed",
)


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.year < 1000:  # strftime's %Y pads such years differently from platform to platform
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    # The same text as strftime("%Y-%m-%dT%H:%M:%SZ"), at a fraction of its cost per snapshot.
    m = moment
    return f"{m.year}-{m.month:02}-{m.day:02}T{m.hour:02}:{m.minute:02}:{m.second:02}Z"


def waiver_record(w: Waiver) -> dict:
    return {
        "rule": w.rule,
        "host": w.host,
        "domain": w.domain,
        "snapshot": w.snapshot,
        "reason": w.reason,
        "owner": w.owner,
        "expires": w.expires.isoformat(),
        "origin": w.origin,
    }


_VALUES: dict[str, Callable[[Finding], object]] = {
    "rule": attrgetter("rule"),
    "name": attrgetter("name"),
    "severity": lambda f: f.severity.value,
    "host": attrgetter("host"),
    "domain": attrgetter("domain"),
    "snapshot": attrgetter("snapshot_label"),  # IMAGE@TAG for a tag libvirt does not know
    "disk": attrgetter("disk"),
    "message": attrgetter("message"),
    "remediation": attrgetter("remediation"),
    "image": attrgetter("image"),
    "domain_uuid": attrgetter("domain_uuid"),
    "waived": lambda f: None if f.waiver is None else waiver_record(f.waiver),
    "baselined": attrgetter("baselined"),
    "suppressed": attrgetter("suppressed"),
}


def finding_record(f: Finding, fingerprint: str, keys: Sequence[str] = REPORT_KEYS) -> dict:
    """The finding as a JSON object with KEYS, in that order."""
    if keys is REPORT_KEYS:  # a report has one per finding: spelled out, for speed
        return {
            "rule": f.rule,
            "name": f.name,
            "severity": f.severity.value,
            "host": f.host,
            "domain": f.domain,
            "snapshot": f.snapshot_label,
            "disk": f.disk,
            "message": f.message,
            "remediation": f.remediation,
            "image": f.image,
            "domain_uuid": f.domain_uuid,
            "fingerprint": fingerprint,
            "waived": None if f.waiver is None else waiver_record(f.waiver),
            "baselined": f.baselined,
        }
    return {k: fingerprint if k == "fingerprint" else _VALUES[k](f) for k in keys}


# The report's JSON: one encoder for every record (json.dumps() with options builds a new one
# per call), and the encoder's text for a str (a TypeError for anything else).
dumps = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode
encode_str = json.encoder.encode_basestring
_enc = encode_str


def finding_text(f: Finding, fingerprint: str) -> str:
    """The text a report's JSON encoder makes of finding_record(F, FINGERPRINT), spelled out
    for speed; a TypeError for a value of a type it does not spell."""
    disk, image, waiver, baselined = f.disk, f.image, f.waiver, f.baselined
    if baselined is not True and baselined is not False:
        raise TypeError(f"baselined is not a bool: {baselined!r}")
    return (
        f'{{"rule": {_enc(f.rule)}, "name": {_enc(f.name)}, '
        f'"severity": {_enc(f.severity.value)}, "host": {_enc(f.host)}, '
        f'"domain": {_enc(f.domain)}, "snapshot": {_enc(f.snapshot_label)}, '
        f'"disk": {"null" if disk is None else _enc(disk)}, "message": {_enc(f.message)}, '
        f'"remediation": {_enc(f.remediation)}, '
        f'"image": {"null" if image is None else _enc(image)}, '
        f'"domain_uuid": {_enc(f.domain_uuid)}, "fingerprint": {_enc(fingerprint)}, '
        f'"waived": {"null" if waiver is None else dumps(waiver_record(waiver))}, '
        f'"baselined": {"true" if baselined else "false"}}}'
    )
