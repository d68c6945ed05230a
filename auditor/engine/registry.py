"""Finds rules through the `snapaudit.rules` entry point group, and looks them up by code,
name or tag (RuleIndex: one lookup for `explain`, --select/--ignore, the configuration and
waivers).

Built-in rules are registered in snapaudit's own pyproject.toml exactly as a third-party
package registers its rules, so there is one discovery path for both.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
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


class RuleIndex:
    """Rules by code or name, either in any case (snap002, Internal-Disk), and selectors:
    a code, a name, a tag, ALL, or ALL-ENABLED (the rules that are on by default)."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = rules
        self.tags = {t for r in rules for t in r.tags}

    def find(self, ident: str) -> Rule | None:
        wanted = ident.lower()
        return next((r for r in self.rules if wanted in (r.code.lower(), r.name.lower())), None)

    def matches(self, selector: str) -> bool:
        return selector == "ALL" or selector in self.tags or self.find(selector) is not None

    def closest(self, selector: str) -> str | None:
        """The code, name or tag SELECTOR was most likely meant to be: a code with its
        number written short or long (SNAP2, snap02: SNAP002), else the most similar."""
        short = re.fullmatch(r"([A-Za-z]+)-?0*(\d{1,3})", selector.strip())
        if short:
            code = f"{short[1].upper()}{int(short[2]):03d}"
            if self.find(code) is not None:
                return code
        known = {r.code.lower(): r.code for r in self.rules}
        known |= {r.name.lower(): r.name for r in self.rules}
        known |= {t.lower(): t for t in self.tags}
        close = difflib.get_close_matches(selector.lower(), sorted(known), n=1)
        return known[close[0]] if close else None

    def selected(self, rule: Rule, selectors: Iterable[str]) -> bool:
        for selector in selectors:
            if selector == "ALL-ENABLED" and rule.enabled:
                return True
            if selector == "ALL" or selector in rule.tags or self.find(selector) is rule:
                return True
        return False
