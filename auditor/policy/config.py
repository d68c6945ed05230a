"""The configuration file: finding it, reading it and checking every value in it (rule
selection, severities, parameters, fail_on, waivers).

Looked up as `--config FILE`, else ./snapaudit.toml, else /etc/snapaudit/config.toml. Every
value remembers where it came from (FILE:LINE, the command line, or the default), for
`snapaudit config --show` and for errors, which name the file and line.
"""

from __future__ import annotations

import enum
import math
import os
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Generic, TypeVar

from auditor.engine.registry import RuleIndex
from auditor.errors import UsageError
from auditor.inputs import InputError, missing, open_regular_input, parse_toml, read_toml_text
from auditor.model import Severity, Waiver
from auditor.policy.origins import Origins
from auditor.rule import Rule

SEARCH_PATH = (Path("snapaudit.toml"), Path("/etc/snapaudit/config.toml"))


class FailOn(enum.StrEnum):
    """The values of fail_on and --fail-on: a severity, or never (the gate never fails)."""

    error = "error"
    warning = "warning"
    info = "info"
    never = "never"


FAIL_ON = tuple(choice.value for choice in FailOn)
TOP_LEVEL = ("select", "ignore", "fail_on", "timeout", "rules", "waivers", "waivers_file")
WAIVER_KEYS = ("rule", "reason", "owner", "expires", "host", "domain", "snapshot")
WAIVER_REQUIRED = ("rule", "reason", "owner", "expires")
DEFAULT = "default"
COMMAND_LINE = "command line"


class ConfigError(UsageError):
    """A configuration problem, as one line that names the file and line."""


T = TypeVar("T")


@dataclass(frozen=True)
class Setting(Generic[T]):
    value: T
    origin: str = DEFAULT


@dataclass(frozen=True)
class Config:
    select: Setting[tuple[str, ...]] = Setting(("ALL-ENABLED",))
    ignore: Setting[tuple[str, ...]] = Setting(())
    fail_on: Setting[str] = Setting("error")
    timeout: Setting[float] = Setting(300)  # seconds per host, connect included
    # code → key → value: "severity", and the rule's parameters
    rules: dict[str, dict[str, Setting[object]]] = field(default_factory=dict)
    waivers: tuple[Waiver, ...] = ()
    sources: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # configuration files found and passed over, and why


def find_config(explicit: Path | None) -> tuple[Path | None, tuple[str, ...]]:
    """The configuration file to read: EXPLICIT, or the first of SEARCH_PATH there is; and
    a line for a working directory's file passed over because another user could have
    written it (in /tmp, say: it must not turn root's failing gate into a pass)."""
    if explicit is not None:
        if missing(explicit):
            raise ConfigError(f"{explicit}: configuration file not found")
        return explicit, ()  # anything but a regular file is refused as it is read
    notes: list[str] = []
    for candidate in SEARCH_PATH:
        if not os.path.isfile(candidate):
            continue
        if not candidate.is_absolute():
            try:
                os.close(open_regular_input(candidate, ConfigError, trusted=True))
            except ConfigError as exc:
                notes.append(f"{exc}; passed over")
                continue
        return candidate, tuple(notes)
    return None, tuple(notes)


def load_config(path: Path | None, rules: Sequence[Rule]) -> Config:
    """The configuration in PATH (None: the defaults), checked against the known rules."""
    if path is None:
        return Config()
    data, text = _read_toml(path)
    where = _Where(str(path), text)
    for key in data:
        if key not in TOP_LEVEL:
            raise where.error((key,), f"unknown key {key!r} (known: {', '.join(TOP_LEVEL)})")
    known = RuleIndex(rules)
    config = Config(sources=(str(path),))
    for key in ("select", "ignore"):
        if key in data:
            value = data[key]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise where.error((key,), f"{key} must be a list of rule codes, names or tags")
            for selector in value:
                if not known.matches(selector):
                    raise where.error((key,), f"unknown rule, name or tag {selector!r}")
            setting = Setting(tuple(value), where.origin((key,)))
            if key == "select":
                config = replace(config, select=setting)
            else:
                config = replace(config, ignore=setting)
    if "fail_on" in data:
        if data["fail_on"] not in FAIL_ON:
            raise where.error(("fail_on",), f"fail_on must be one of {', '.join(FAIL_ON)}")
        config = replace(config, fail_on=Setting(data["fail_on"], where.origin(("fail_on",))))
    if "timeout" in data:
        if not positive_seconds(data["timeout"]):
            raise where.error(("timeout",), "timeout must be a positive number of seconds")
        config = replace(config, timeout=Setting(data["timeout"], where.origin(("timeout",))))
    rule_settings = _rule_settings(data.get("rules", {}), known, where)
    waivers = list(_waivers(data.get("waivers", []), known, where, ("waivers",)))
    if "waivers_file" in data:
        if not isinstance(data["waivers_file"], str):
            raise where.error(("waivers_file",), "waivers_file must be a path")
        extra = path.parent / data["waivers_file"]
        if missing(extra):
            raise where.error(("waivers_file",), f"waivers file {extra} not found")
        more, more_text = _read_toml(extra)
        extra_where = _Where(str(extra), more_text)
        for key in more:
            if key != "waivers":
                raise extra_where.error(
                    (key,), f"unknown key {key!r} (a waivers file holds [[waivers]] only)"
                )
        waivers += _waivers(more.get("waivers", []), known, extra_where, ("waivers",))
        config = replace(config, sources=(*config.sources, str(extra)))
    return replace(config, rules=rule_settings, waivers=tuple(waivers))


def positive_seconds(value: object) -> bool:
    # bool is an int in Python; inf and nan are TOML floats but no time limit.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        seconds = float(value)
    except OverflowError:
        return False
    return math.isfinite(seconds) and seconds > 0


def _rule_settings(
    table: object, known: RuleIndex, where: _Where
) -> dict[str, dict[str, Setting[object]]]:
    if not isinstance(table, dict):
        raise where.error(("rules",), "rules must be a table of [rules.CODE] tables")
    settings: dict[str, dict[str, Setting[object]]] = {}
    for ident, values in table.items():
        rule = known.find(ident)
        path = ("rules", ident)
        if rule is None:
            raise where.error(path, f"unknown rule {ident!r}")
        if not isinstance(values, dict):
            raise where.error(path, f"rules.{ident} must be a table")
        for key, value in values.items():
            origin = where.origin((*path, key))
            if key == "severity":
                if value not in [s.value for s in Severity]:
                    raise where.error((*path, key), "severity must be error, warning or info")
            elif key in rule.params:
                _check_param(rule, key, value, where, (*path, key))
            else:
                known_keys = ", ".join(["severity", *rule.params])
                raise where.error(
                    (*path, key), f"unknown setting {key!r} for {rule.code} (known: {known_keys})"
                )
            settings.setdefault(rule.code, {})[key] = Setting(value, origin)
    return settings


def _check_param(rule: Rule, key: str, value: object, where: _Where, path: tuple) -> None:
    default = rule.params[key]
    # bool is an int in Python; a parameter takes exactly its default's type.
    if type(value) is not type(default):
        raise where.error(
            path, f"{rule.code} {key} must be {type(default).__name__}, not {type(value).__name__}"
        )
    if isinstance(value, int) and value < 0:
        raise where.error(path, f"{rule.code} {key} must not be negative")
    if key == "pattern" and isinstance(value, str):
        try:
            re.compile(value)
        except re.error as exc:
            raise where.error(
                path, f"{rule.code} pattern is not a valid regular expression: {exc}"
            ) from None


def _waivers(items: object, known: RuleIndex, where: _Where, path: tuple):
    if not isinstance(items, list):
        raise where.error(path, "waivers must be an array of [[waivers]] tables")
    for index, item in enumerate(items):
        here = (*path, index)
        if not isinstance(item, dict):
            raise where.error(here, "a waiver must be a table")
        for key in item:
            if key not in WAIVER_KEYS:
                raise where.error(
                    (*here, key), f"unknown waiver key {key!r} (known: {', '.join(WAIVER_KEYS)})"
                )
        for key in WAIVER_REQUIRED:
            if not item.get(key):
                raise where.error(here, f"a waiver needs {key!r}")
        for key in ("rule", "reason", "owner", "host", "domain", "snapshot"):
            if key in item and not isinstance(item[key], str):
                raise where.error((*here, key), f"waiver {key} must be a string")
        rule = known.find(item["rule"])
        if rule is None:
            raise where.error((*here, "rule"), f"unknown rule {item['rule']!r}")
        expires = item["expires"]
        if isinstance(expires, str):
            try:
                expires = date.fromisoformat(expires)
            except ValueError:
                expires = None
        if not isinstance(expires, date) or hasattr(expires, "hour"):
            raise where.error((*here, "expires"), "waiver expires must be a date (YYYY-MM-DD)")
        yield Waiver(
            rule=rule.code,
            reason=item["reason"],
            owner=item["owner"],
            expires=expires,
            host=item.get("host", "*"),
            domain=item.get("domain", "*"),
            snapshot=item.get("snapshot", "*"),
            origin=where.origin(here),
        )


def _read_toml(path: Path) -> tuple[dict, str]:
    text = read_toml_text(path, ConfigError, trusted=True)
    try:
        data = parse_toml(text)
    except InputError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise ConfigError(f"{path}:{found.group(1) if found else 1}: {message}") from None
    return data, text


class _Where(Origins):
    def error(self, path: tuple, message: str) -> ConfigError:
        return ConfigError(f"{self.origin(path)}: {message}")
