"""The text of `snapaudit config --show`: every effective value, one a line, each with
where it came from."""

from __future__ import annotations

from collections.abc import Sequence

from auditor.policy.config import DEFAULT, Config, Setting
from auditor.policy.selection import selected_rules
from auditor.rule import Rule


def render(config: Config, rules: Sequence[Rule]) -> str:
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


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)
