"""What the golden-file tests share: the built-in rules, an audit at the rule tests' fixed
time with a fixture's own configuration, and findings as the golden files hold them. Shared
by the rule tests and the libvirt semantics tests."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

from auditor.engine.audit import audit
from auditor.engine.registry import load_rules
from auditor.policy.config import load_config
from auditor.policy.selection import selected_rules
from tests.helpers import CLOCK

RULES, LOAD_ERRORS = load_rules()
# Rule tests run at a fixed time: a day after the fixtures' snapshots (1700000000).
NOW = datetime.fromtimestamp(int(CLOCK), tz=UTC)


def audit_scans(scans, config: Path, only: str | None = None):
    """Audit with the fixture's own configuration (CODE.toml), if it has one; with ONLY, run
    that rule alone (it must be selected)."""
    settings = load_config(config if config.exists() else None, RULES)
    rules, policy = selected_rules(settings, RULES)
    if only is not None:
        rules = tuple(r for r in rules if r.code == only)
        policy = dataclasses.replace(policy, rules=tuple(p for p in policy.rules if p.code == only))
        assert [r.code for r in rules] == [only]
    return audit(scans, rules, now=NOW, policy=policy)


# The finding as reports show it: "snapshot" is what the JSON report's field holds.
GOLDEN_KEYS = ("rule", "name", "severity", "domain", "snapshot", "disk", "message", "image")


def finding_rows(result, images: Path | None = None):
    """Findings without the host URI, which depends on where the repository is checked out,
    and with the image directory written as @IMAGES@."""
    rows = []
    for finding in result.findings:
        row = {key: getattr(finding, key) for key in GOLDEN_KEYS}
        row["severity"] = finding.severity.value
        row["snapshot"] = finding.snapshot_label
        if images is not None:
            row = {
                k: v.replace(str(images), "@IMAGES@") if isinstance(v, str) else v
                for k, v in row.items()
            }
        rows.append(row)
    return rows
