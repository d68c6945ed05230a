"""Checks a report read back (auditor.inputs bounds the reading) before anything uses it.

A report is checked against the shipped schema, reports/schemas/report-v1.json, by a small
interpreter of the part of JSON Schema that file uses, plus its `format` annotations (real
dates and times) and one rule JSON Schema cannot state: every string is Unicode text (no lone
surrogates, which no report writer could encode again).

Why not the jsonschema package: it would be a runtime dependency (with a compiled one under it)
on every hypervisor snapaudit runs on as root, for the dozen keywords used here; and its
messages name the failing keyword, where an operator needs the field. The test suite checks
that whatever this accepts, jsonschema accepts too.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from importlib.resources import files

from auditor.display import clean

# The JSON Schema keywords report-v1.json uses, all of which are checked.
KEYWORDS = frozenset(
    [
        "$schema",
        "$id",
        "$defs",
        "title",
        "description",
        "type",
        "required",
        "properties",
        "items",
        "const",
        "enum",
        "pattern",
        "minimum",
        "oneOf",
        "allOf",
        "$ref",
        "format",
    ]
)
JSON_TYPES: dict[str, type | tuple[type, ...]] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
    "integer": int,
    "number": (int, float),
}
_SURROGATE = re.compile("[\ud800-\udfff]")


class Invalid(ValueError):
    """What is wrong, and where: a field path such as hosts[0].hostname, or '' for the whole."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}" if where else problem)


def report_schema() -> dict:
    return json.loads((files("auditor.reports") / "schemas" / "report-v1.json").read_text())


def check_report(document: object) -> None:
    """Raise Invalid unless DOCUMENT is a report that report-v1.json accepts."""
    _check_text(document, "")
    schema = report_schema()
    _Checker(schema).check(document, schema, "")


def _check_text(value: object, where: str) -> None:
    """Every string and key, even in free-form parts (rule parameters), is Unicode text."""
    if isinstance(value, str):
        if _SURROGATE.search(value):
            raise Invalid(where, "not Unicode text (a lone surrogate)")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, where)
            _check_text(item, _join(where, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_text(item, f"{where}[{index}]")


def _join(where: str, key: str) -> str:
    key = clean(key)  # a key is the file's text too: the path must stay one printable line
    return f"{where}.{key}" if where else key


def _type_name(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return {dict: "object", list: "array", str: "string", int: "integer", float: "number"}[
        type(value)
    ]


def _is(value: object, type_name: str) -> bool:
    # bool is an int in Python, not in JSON.
    if isinstance(value, bool):
        return type_name == "boolean"
    return isinstance(value, JSON_TYPES[type_name])


def _format(value: str, name: str) -> bool:
    try:
        if name == "date":
            date.fromisoformat(value)
        elif name == "date-time":
            datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return False
    return True


class _Checker:
    def __init__(self, root: dict) -> None:
        self.root = root

    def check(self, value: object, schema: dict, where: str) -> None:
        unknown = set(schema) - KEYWORDS
        if unknown:  # a schema keyword this checker would silently ignore
            raise AssertionError(f"report schema keyword {sorted(unknown)} is not checked")
        if "$ref" in schema:
            self.check(value, self._resolve(schema["$ref"]), where)
        for part in schema.get("allOf", ()):
            self.check(value, part, where)
        if "oneOf" in schema:
            self._one_of(value, schema["oneOf"], where)
        if "const" in schema and value != schema["const"]:
            raise Invalid(where, f"{_short(value)} is not {schema['const']!r}")
        if "enum" in schema and (not isinstance(value, str) or value not in schema["enum"]):
            raise Invalid(where, f"{_short(value)} is not one of {', '.join(schema['enum'])}")
        if "type" in schema:
            types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
            if not any(_is(value, t) for t in types):
                raise Invalid(where, f"expected {' or '.join(types)}, got {_type_name(value)}")
        if isinstance(value, str):
            if "pattern" in schema and not re.search(schema["pattern"], value):
                raise Invalid(where, f"{_short(value)} is not in the expected form")
            if "format" in schema and not _format(value, schema["format"]):
                raise Invalid(where, f"{_short(value)} is not a valid {schema['format']}")
        if _is(value, "number") and "minimum" in schema and value < schema["minimum"]:
            raise Invalid(where, f"{value} is below {schema['minimum']}")
        if isinstance(value, dict):
            missing = [repr(key) for key in schema.get("required", ()) if key not in value]
            if missing:
                raise Invalid(where, f"missing {', '.join(missing)}")
            for key, sub in schema.get("properties", {}).items():
                if key in value:
                    self.check(value[key], sub, _join(where, key))
        if isinstance(value, list) and "items" in schema:
            for index, item in enumerate(value):
                self.check(item, schema["items"], f"{where}[{index}]")

    def _one_of(self, value: object, options: list, where: str) -> None:
        failures = []
        for option in options:
            try:
                self.check(value, option, where)
            except Invalid as exc:
                # Say what the value should have been, not that it is not null.
                failures.append((option.get("type") == "null", exc))
        if len(failures) == len(options):
            raise min(failures, key=lambda failure: failure[0])[1]
        if len(failures) < len(options) - 1:
            raise Invalid(where, f"{_short(value)} matches more than one form")

    def _resolve(self, ref: str) -> dict:
        node = self.root
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        return node


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
