"""Which rules run, with which severities and parameters: the configuration's select,
ignore and [rules.X] tables and the command line's --select/--ignore applied to the rules
(looked up by code, name or tag through the registry's RuleIndex)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from auditor.engine.audit import policy_for
from auditor.engine.registry import RuleIndex
from auditor.model import Policy, Severity
from auditor.policy.config import COMMAND_LINE, Config, ConfigError, Setting, positive_seconds
from auditor.rule import Rule


def with_command_line(
    config: Config,
    rules: Sequence[Rule],
    select: Iterable[str] | None,
    ignore: Iterable[str] | None,
    fail_on: str | None,
    timeout: float | None = None,
) -> Config:
    """Command-line options replace the file's values."""
    known = RuleIndex(rules)
    for option, selectors in (("--select", select), ("--ignore", ignore)):
        for selector in selectors or ():
            if not known.matches(selector):
                close = known.closest(selector)
                hint = f"did you mean {close}?" if close else "`snapaudit rules` lists them"
                raise ConfigError(f"{option} {selector!r}: unknown rule, name or tag; {hint}")
    if select:
        config = replace(config, select=Setting(tuple(select), COMMAND_LINE))
    if ignore:
        config = replace(config, ignore=Setting(tuple(ignore), COMMAND_LINE))
    if fail_on:
        config = replace(config, fail_on=Setting(fail_on, COMMAND_LINE))
    if timeout is not None:
        if not positive_seconds(timeout):
            raise ConfigError("--timeout must be a positive number of seconds")
        config = replace(config, timeout=Setting(timeout, COMMAND_LINE))
    return config


def selected_rules(config: Config, rules: Sequence[Rule]) -> tuple[tuple[Rule, ...], Policy]:
    """The rules that run and their effective severities and parameters."""
    known = RuleIndex(rules)
    chosen = [
        r
        for r in rules
        if known.selected(r, config.select.value) and not known.selected(r, config.ignore.value)
    ]
    policy = Policy(
        rules=tuple(
            policy_for(
                r,
                Severity(
                    str(config.rules.get(r.code, {}).get("severity", Setting(r.severity)).value)
                ),
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
