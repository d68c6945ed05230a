"""The JSON members of a bundle, read as untrusted data: every field is checked for its
type before the model is built from it, and anything else is one line naming the member."""

from __future__ import annotations

import dataclasses

from auditor.inputs import InputError, check_text, check_xml_text, parse_json
from auditor.model import FileFacts, Skipped
from auditor.sources.xml.assemble import RawDomain, RawSnapshot
from auditor.sources.xml.disk_source import Volume

FORMAT = "snapaudit/bundle/v1"
HOST_FIELDS = ("uri", "hostname", "libvirt_version", "hypervisor_version", "driver")


class BundleError(ValueError):
    """A bundle that cannot be read, as one line."""


def read_manifest(data: bytes, path: str) -> dict:
    manifest = json_load(data, path, "manifest.json")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{path}: not a snapaudit bundle ({FORMAT})")
    for key in HOST_FIELDS:
        value = manifest.get(key)
        if not (value is None or isinstance(value, str)) or (key == "uri" and not value):
            raise BundleError(f"{path}: manifest.json: {key} must be a string")
    return manifest


def read_domain(
    index: object, members: dict[str, bytes], path: str, name: str
) -> tuple[RawDomain, list[tuple[str, str]]]:
    """The domain's raw metadata, and (snapshot, reason) for each XML refused unread."""
    where = f"{path}: {name}"
    if not isinstance(index, dict) or not all(
        isinstance(index.get(k), str) for k in ("name", "uuid")
    ):
        raise BundleError(f"{where}: name and uuid must be strings")
    listed = index.get("snapshots")
    if not isinstance(listed, list):
        raise BundleError(f"{where}: snapshots must be a list")
    snapshots, refused = [], []
    # Each file and each name once: an index naming one file a million times would have it
    # parsed a million times, far beyond what the bundle's size bounds.
    files: set[int] = set()
    names: set[str] = set()
    for item in listed:
        if not (
            isinstance(item, dict)
            and isinstance(item.get("name"), str)
            and type(item.get("file")) is int
            and isinstance(item.get("current"), bool)
        ):
            raise BundleError(f"{where}: each snapshot needs a name, a file and current")
        if item["file"] in files or item["name"] in names:
            raise BundleError(f"{where}: snapshot {item['name']!r} or its file is listed twice")
        files.add(item["file"])
        names.add(item["name"])
        xml = members.get(f"snapshots/{item['file']}.xml")
        if xml is None:
            raise BundleError(f"{where}: snapshot {item['name']!r} has no XML in the bundle")
        try:
            check_xml_text(xml)
        except InputError as exc:
            refused.append((item["name"], f"{where}: snapshot XML {exc}"))
            continue
        snapshots.append(RawSnapshot(item["name"], xml, item["current"]))
    definition = members.get("domain.xml")
    if definition is not None:
        try:
            check_xml_text(definition)
        except InputError as exc:
            raise BundleError(f"{where}: domain definition {exc}") from None
    raw = RawDomain(index["name"], index["uuid"], definition, tuple(snapshots))
    return raw, refused


def read_volumes(data: bytes, path: str) -> dict[tuple[str, str], Volume]:
    records = json_load(data, path, "volumes.json")
    if not isinstance(records, list):
        raise BundleError(f"{path}: volumes.json must be a list")
    found = {}
    for r in records:
        keys = ("pool", "volume", "type", "path", "error")
        if not isinstance(r, dict) or not all(
            isinstance(r.get(k), str) or (k not in ("pool", "volume") and r.get(k) is None)
            for k in keys
        ):
            raise BundleError(f"{path}: volumes.json: each entry needs pool, volume, type, path")
        found[r["pool"], r["volume"]] = Volume(r["type"], r["path"], r["error"])
    return found


def read_files(data: bytes, path: str) -> dict[str, FileFacts]:
    records = json_load(data, path, "files.json")
    fields = {f.name: f.type for f in dataclasses.fields(FileFacts)}
    facts = {}
    if not isinstance(records, list):
        raise BundleError(f"{path}: files.json must be a list")
    for record in records:
        if not isinstance(record, dict) or not isinstance(record.get("path"), str):
            raise BundleError(f"{path}: files.json: each entry needs a path")
        known = {k: v for k, v in record.items() if k in fields}
        for key in ("backing_chain", "internal_snapshots"):
            if key in known:
                value = known[key]
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise BundleError(f"{path}: files.json: {key} must be a list of strings")
                known[key] = tuple(value)
        # Reports and rules do arithmetic and string work on these: a size of "big" would
        # otherwise end the HTML report in a traceback.
        for key, kinds in _FACT_TYPES.items():
            if key in known and type(known[key]) not in kinds:
                raise BundleError(
                    f"{path}: files.json: {key} of {known['path']!r} has the wrong type"
                )
        try:
            facts[known["path"]] = FileFacts(**known)
        except TypeError as exc:
            raise BundleError(f"{path}: files.json: {exc}") from None
    return facts


_FACT_TYPES = {
    "exists": (bool,),
    "size": (int, type(None)),
    "format": (str, type(None)),
    "error": (str, type(None)),
    "file_type": (str, type(None)),
    "known_depth": (int, type(None)),
    "virtual_size": (int, type(None)),
    "cluster_size": (int, type(None)),
    "length": (int, type(None)),
    "mtime_ns": (int, type(None)),
}


def read_skipped(data: bytes, path: str, uri: str) -> list[Skipped]:
    records = json_load(data, path, "skipped.json")
    if not isinstance(records, list):
        raise BundleError(f"{path}: skipped.json must be a list")
    out = []
    for r in records:
        if not isinstance(r, dict) or not isinstance(r.get("reason"), str):
            raise BundleError(f"{path}: skipped.json: each entry needs a reason")
        domain, snapshot = r.get("domain"), r.get("snapshot")
        if not all(v is None or isinstance(v, str) for v in (domain, snapshot)):
            raise BundleError(f"{path}: skipped.json: domain and snapshot must be strings")
        out.append(Skipped(uri, domain, snapshot, r["reason"], bool(r.get("vanished"))))
    return out


def json_load(data: bytes, path: str, name: str):
    try:
        value = parse_json(data)
        check_text(value)
        return value
    except InputError as exc:
        raise BundleError(f"{path}: {name}: {exc}") from None
