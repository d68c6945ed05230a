"""Finds rules through the `snapaudit.rules` entry point group.

Built-in rules are registered in snapaudit's own pyproject.toml exactly as a third-party
package registers its rules, so there is one discovery path for both.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from auditor.display import one_line
from auditor.model import RuleError
from auditor.rule import CODE_PATTERN, NAME_PATTERN, Rule

ENTRY_POINT_GROUP = "snapaudit.rules"


def load_rules(group: str = ENTRY_POINT_GROUP) -> tuple[tuple[Rule, ...], tuple[RuleError, ...]]:
    """Every registered rule, sorted by code, and an error record for each that did not load."""
    rules: dict[str, Rule] = {}
    names: dict[str, str] = {}
    errors: list[RuleError] = []

    # Built-in rules first, so that a plugin reusing a built-in code is the one reported.
    # A distribution's name is read from its metadata file each time it is asked for: once
    # per distribution here, not once per rule.
    dist_names: dict[int, str] = {}

    def order(ep):
        if ep.dist is not None and id(ep.dist) not in dist_names:
            dist_names[id(ep.dist)] = ep.dist.name
        return (ep.dist is None or dist_names[id(ep.dist)] != "snapaudit", ep.name, ep.value)

    for ep in sorted(entry_points(group=group), key=order):
        try:
            loaded = ep.load()
        except Exception as exc:  # a broken plugin must not stop the audit
            errors.append(RuleError(ep.name, f"failed to load {ep.value}: {one_line(exc)}"))
            continue
        problem = _validate(loaded, rules, names)
        if problem:
            errors.append(RuleError(ep.name, f"{ep.value}: {problem}"))
            continue
        rules[loaded.code] = loaded
        names[loaded.name] = loaded.code
    return tuple(sorted(rules.values(), key=lambda r: r.code)), tuple(errors)


def _validate(loaded, rules: dict[str, Rule], names: dict[str, str]) -> str | None:
    if not isinstance(loaded, Rule):
        return "is not a rule (decorate the check function with @auditor.rule.rule)"
    if not CODE_PATTERN.match(loaded.code):
        return f"invalid rule code {loaded.code!r}"
    if not NAME_PATTERN.match(loaded.name):
        return f"invalid rule name {loaded.name!r}"
    if loaded.code in rules:
        return f"duplicate rule code {loaded.code} (already used by {rules[loaded.code].name})"
    if loaded.name in names:
        return f"duplicate rule name {loaded.name} (already used by {names[loaded.name]})"
    return None
