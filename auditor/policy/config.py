"""The configuration file: rule selection, severities, parameters, waivers.

Looked up as `--config FILE`, else ./snapaudit.toml, else /etc/snapaudit/config.toml. Every
value remembers where it came from (FILE:LINE, the command line, or the default), for
`snapaudit config --show` and for errors, which name the file and line.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

from auditor.engine.audit import policy_for
from auditor.model import Policy, Severity, Waiver
from auditor.rule import Rule

SEARCH_PATH = (Path("snapaudit.toml"), Path("/etc/snapaudit/config.toml"))
FAIL_ON = ("error", "warning", "info", "never")
TOP_LEVEL = ("select", "ignore", "fail_on", "timeout", "rules", "waivers", "waivers_file")
WAIVER_KEYS = ("rule", "reason", "owner", "expires", "host", "domain", "snapshot")
WAIVER_REQUIRED = ("rule", "reason", "owner", "expires")
DEFAULT = "default"
COMMAND_LINE = "command line"


class ConfigError(ValueError):
    """A configuration problem, as one line that names the file and line."""


@dataclass(frozen=True)
class Setting:
    value: object
    origin: str = DEFAULT


@dataclass(frozen=True)
class Config:
    select: Setting = Setting(("ALL-ENABLED",))
    ignore: Setting = Setting(())
    fail_on: Setting = Setting("error")
    timeout: Setting = Setting(300)  # seconds per host, connect included
    rules: dict[str, dict[str, Setting]] = field(default_factory=dict)  # code → key → value
    waivers: tuple[Waiver, ...] = ()
    sources: tuple[str, ...] = ()


def find_config(explicit: Path | None) -> Path | None:
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"{explicit}: configuration file not found")
        return explicit
    return next((p for p in SEARCH_PATH if p.is_file()), None)


def load_config(path: Path | None, rules: Sequence[Rule]) -> Config:
    """The configuration in PATH (None: the defaults), checked against the known rules."""
    if path is None:
        return Config()
    data, lines = _read_toml(path)
    where = _Where(str(path), lines)
    for key in data:
        if key not in TOP_LEVEL:
            raise where.error((key,), f"unknown key {key!r} (known: {', '.join(TOP_LEVEL)})")
    known = _RuleIndex(rules)
    config = Config(sources=(str(path),))
    for key in ("select", "ignore"):
        if key in data:
            value = data[key]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise where.error((key,), f"{key} must be a list of rule codes, names or tags")
            for selector in value:
                if not known.matches(selector):
                    raise where.error((key,), f"unknown rule, name or tag {selector!r}")
            config = replace(config, **{key: Setting(tuple(value), where.origin((key,)))})
    if "fail_on" in data:
        if data["fail_on"] not in FAIL_ON:
            raise where.error(("fail_on",), f"fail_on must be one of {', '.join(FAIL_ON)}")
        config = replace(config, fail_on=Setting(data["fail_on"], where.origin(("fail_on",))))
    if "timeout" in data:
        if not _positive_seconds(data["timeout"]):
            raise where.error(("timeout",), "timeout must be a positive number of seconds")
        config = replace(config, timeout=Setting(data["timeout"], where.origin(("timeout",))))
    rule_settings = _rule_settings(data.get("rules", {}), known, where)
    waivers = list(_waivers(data.get("waivers", []), known, where, ("waivers",)))
    if "waivers_file" in data:
        if not isinstance(data["waivers_file"], str):
            raise where.error(("waivers_file",), "waivers_file must be a path")
        extra = path.parent / data["waivers_file"]
        if not extra.is_file():
            raise where.error(("waivers_file",), f"waivers file {extra} not found")
        more, more_lines = _read_toml(extra)
        extra_where = _Where(str(extra), more_lines)
        for key in more:
            if key != "waivers":
                raise extra_where.error(
                    (key,), f"unknown key {key!r} (a waivers file holds [[waivers]] only)"
                )
        waivers += _waivers(more.get("waivers", []), known, extra_where, ("waivers",))
        config = replace(config, sources=(*config.sources, str(extra)))
    return replace(config, rules=rule_settings, waivers=tuple(waivers))


def with_command_line(
    config: Config,
    rules: Sequence[Rule],
    select: Iterable[str] | None,
    ignore: Iterable[str] | None,
    fail_on: str | None,
    timeout: float | None = None,
) -> Config:
    """Command-line options replace the file's values."""
    known = _RuleIndex(rules)
    for selector in [*(select or ()), *(ignore or ())]:
        if not known.matches(selector):
            raise ConfigError(f"unknown rule, name or tag {selector!r} on the command line")
    if select:
        config = replace(config, select=Setting(tuple(select), COMMAND_LINE))
    if ignore:
        config = replace(config, ignore=Setting(tuple(ignore), COMMAND_LINE))
    if fail_on:
        config = replace(config, fail_on=Setting(fail_on, COMMAND_LINE))
    if timeout is not None:
        if not _positive_seconds(timeout):
            raise ConfigError("--timeout must be a positive number of seconds")
        config = replace(config, timeout=Setting(timeout, COMMAND_LINE))
    return config


def _positive_seconds(value: object) -> bool:
    # bool is an int in Python; inf and nan are TOML floats but no time limit.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        seconds = float(value)
    except OverflowError:
        return False
    return math.isfinite(seconds) and seconds > 0


def selected_rules(config: Config, rules: Sequence[Rule]) -> tuple[tuple[Rule, ...], Policy]:
    """The rules that run and their effective severities and parameters."""
    known = _RuleIndex(rules)
    chosen = [
        r
        for r in rules
        if known.selected(r, config.select.value) and not known.selected(r, config.ignore.value)
    ]
    policy = Policy(
        rules=tuple(
            policy_for(
                r,
                Severity(config.rules.get(r.code, {}).get("severity", Setting(r.severity)).value),
                {
                    k: config.rules.get(r.code, {}).get(k, Setting(v)).value
                    for k, v in r.params.items()
                },
            )
            for r in chosen
        ),
        sources=config.sources,
    )
    return tuple(chosen), policy


def show(config: Config, rules: Sequence[Rule]) -> str:
    """The effective configuration, one value a line, each with where it came from."""
    default_select = config.select.origin == DEFAULT
    rows = [
        (
            "select",
            "(every rule that is on by default)"
            if default_select
            else _toml(list(config.select.value)),
            config.select.origin,
        ),
        ("ignore", _toml(list(config.ignore.value)), config.ignore.origin),
        ("fail_on", _toml(config.fail_on.value), config.fail_on.origin),
        ("timeout", _toml(config.timeout.value), config.timeout.origin),
    ]
    chosen, _ = selected_rules(config, rules)
    running = {r.code for r in chosen}
    for r in rules:
        settings = config.rules.get(r.code, {})
        state = "on" if r.code in running else "off"
        rows.append((f"rules.{r.code}", f"{state} ({r.name})", "select/ignore"))
        severity = settings.get("severity", Setting(r.severity.value))
        rows.append((f"rules.{r.code}.severity", _toml(str(severity.value)), severity.origin))
        for key, default in r.params.items():
            setting = settings.get(key, Setting(default))
            rows.append((f"rules.{r.code}.{key}", _toml(setting.value), setting.origin))
    for w in config.waivers:
        rows.append(
            (
                "waiver",
                f"{w.rule} host={w.host} domain={w.domain} "
                f"snapshot={w.snapshot} expires={w.expires} owner={w.owner}",
                w.origin,
            )
        )
    width = max(len(key) for key, _, _ in rows)
    lines = [f"# configuration files: {', '.join(config.sources) or 'none'}"]
    lines += [f"{key:<{width}} = {value}  # {origin}" for key, value, origin in rows]
    return "\n".join(lines) + "\n"


class _RuleIndex:
    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = rules
        self.tags = {t for r in rules for t in r.tags}

    def find(self, ident: str) -> Rule | None:
        return next((r for r in self.rules if ident.upper() == r.code or ident == r.name), None)

    def matches(self, selector: str) -> bool:
        return selector == "ALL" or selector in self.tags or self.find(selector) is not None

    def selected(self, rule: Rule, selectors: Iterable[str]) -> bool:
        for selector in selectors:
            if selector == "ALL-ENABLED" and rule.enabled:
                return True
            if selector == "ALL" or selector in rule.tags or self.find(selector) is rule:
                return True
        return False


def _rule_settings(table: object, known: _RuleIndex, where: _Where) -> dict:
    if not isinstance(table, dict):
        raise where.error(("rules",), "rules must be a table of [rules.CODE] tables")
    settings: dict[str, dict[str, Setting]] = {}
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
    if key == "pattern":
        try:
            re.compile(value)
        except re.error as exc:
            raise where.error(
                path, f"{rule.code} pattern is not a valid regular expression: {exc}"
            ) from None


def _waivers(items: object, known: _RuleIndex, where: _Where, path: tuple):
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


def _read_toml(path: Path) -> tuple[dict, dict[tuple, int]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise ConfigError(f"{path}:{found.group(1) if found else 1}: {message}") from None
    return data, _key_lines(text)


class _Where:
    """Turns key paths into FILE:LINE."""

    def __init__(self, name: str, lines: dict[tuple, int]) -> None:
        self.name, self.lines = name, lines

    def origin(self, path: tuple) -> str:
        for end in range(len(path), 0, -1):  # the key, else the nearest enclosing table
            if path[:end] in self.lines:
                return f"{self.name}:{self.lines[path[:end]]}"
        return self.name

    def error(self, path: tuple, message: str) -> ConfigError:
        return ConfigError(f"{self.origin(path)}: {message}")


def _key_lines(text: str) -> dict[tuple, int]:
    """Where each key and table is declared. A light reading of TOML as people write it:
    [table], [[array of tables]] and key = value lines, dotted keys included."""
    lines: dict[tuple, int] = {}
    table: tuple = ()
    arrays: dict[tuple, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("[["):
            name = tuple(_split_key(stripped[2:].split("]]", 1)[0]))
            arrays[name] = arrays.get(name, -1) + 1
            table = (*name, arrays[name])
            lines.setdefault(table, number)
        elif stripped.startswith("["):
            table = tuple(_split_key(stripped[1:].split("]", 1)[0]))
            lines.setdefault(table, number)
        elif "=" in stripped and not stripped.startswith("#"):
            key = tuple(_split_key(stripped.split("=", 1)[0]))
            for end in range(1, len(key) + 1):
                lines.setdefault((*table, *key[:end]), number)
    return lines


def _split_key(key: str) -> list[str]:
    return [part.strip().strip("\"'") for part in re.findall(r'"[^"]*"|\'[^\']*\'|[^.]+', key)]


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)
