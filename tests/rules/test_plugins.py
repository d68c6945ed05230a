"""Third-party rules arrive through the same entry points as the built-in ones, and a broken
plugin is reported, never fatal."""

from __future__ import annotations

import json

from auditor.engine.registry import load_rules
from tests.helpers import fixture_uri, run_cli


def test_plugins_load_beside_built_ins_and_broken_ones_are_reported(plugin_path):
    rules, errors = load_rules()
    assert [r.code for r in rules] == ["ACME001", "ACME002", "HOST001"] + [
        f"SNAP{i:03d}" for i in range(1, 19)
    ]
    assert [(e.rule, e.message) for e in errors] == [
        (
            "acme-duplicate",
            "acme_rules:acme_duplicate: duplicate rule code SNAP001 (already used by"
            " internal-memory)",
        ),
        (
            "acme-missing",
            "failed to load acme_rules_missing:rule: ModuleNotFoundError: No module named"
            " 'acme_rules_missing'",
        ),
        (
            "acme-not-a-rule",
            "acme_rules:not_a_rule: is not a rule (decorate the check function with"
            " @auditor.rule.rule)",
        ),
    ]


def test_a_raising_rule_is_recorded_and_the_scan_goes_on(plugin_path):
    proc = run_cli(
        "scan",
        "-c",
        fixture_uri("seed_examples.xml"),
        "--format",
        "json",
        env={"PYTHONPATH": str(plugin_path)},
    )
    report = json.loads(proc.stdout)
    assert proc.returncode == 3, proc.stderr
    # The crashing rule fails on each snapshot; every other rule still ran.
    assert [(e["rule"], e["snapshot"], e["message"]) for e in report["rule_errors"]] == [
        (
            "acme-duplicate",
            None,
            "acme_rules:acme_duplicate: duplicate rule code SNAP001"
            " (already used by internal-memory)",
        ),
        (
            "acme-missing",
            None,
            "failed to load acme_rules_missing:rule: ModuleNotFoundError:"
            " No module named 'acme_rules_missing'",
        ),
        (
            "acme-not-a-rule",
            None,
            "acme_rules:not_a_rule: is not a rule (decorate the check"
            " function with @auditor.rule.rule)",
        ),
        # Snapshots come oldest first: name-2 was taken in 2022, name-1 in 2024.
        ("ACME002", "sample-snapshot-name-2", "raised RuntimeError: boom"),
        ("ACME002", "sample-snapshot-name-1", "raised RuntimeError: boom"),
    ]
    assert [(f["rule"], f["snapshot"]) for f in report["findings"]] == [
        ("ACME001", "sample-snapshot-name-2"),
        ("SNAP001", "sample-snapshot-name-2"),
        ("SNAP002", "sample-snapshot-name-2"),
        ("SNAP013", "sample-snapshot-name-2"),
        ("ACME001", "sample-snapshot-name-1"),
        ("SNAP017", "sample-snapshot-name-2"),
    ]


def test_plugin_rules_are_listed_and_explained(plugin_path):
    env = {"PYTHONPATH": str(plugin_path)}
    listing = run_cli("rules", env=env)
    assert listing.returncode == 0
    assert "ACME001  acme-description      info     A snapshot has no description." in (
        listing.stdout.splitlines()
    )
    assert "snapaudit: rule acme-missing not loaded: failed to load" in listing.stderr
    explained = run_cli("explain", "acme-description", env=env)
    assert explained.returncode == 0
    assert explained.stdout.startswith("ACME001 acme-description (info)\n")


def test_a_rule_yielding_a_malformed_violation_is_recorded_not_rendered():
    from auditor.engine.audit import audit
    from auditor.rule import Violation, rule
    from auditor.sources.live.scanner import scan_host

    @rule("ACME009", "acme-malformed", "warning")
    def malformed(snapshot, context):
        yield Violation(object())  # type: ignore[arg-type]
        yield "not a violation"
        yield Violation("bad disk", disk=7)  # type: ignore[arg-type]
        yield Violation("bad severity", severity="error")  # type: ignore[arg-type]
        yield Violation("kept")

    scan = scan_host(fixture_uri("seed_examples.xml"), check_files=False)
    result = audit([scan], [malformed])
    first = scan.snapshots[0].name
    assert [(e.rule, e.snapshot, e.message) for e in result.rule_errors[:4]] == [
        ("ACME009", first, "yielded a message of type object, not str"),
        ("ACME009", first, "yielded str, not a Violation"),
        ("ACME009", first, "yielded a int where a str or None belongs"),
        ("ACME009", first, "yielded a severity of type str, not Severity"),
    ]
    assert len(result.rule_errors) == 4 * len(scan.snapshots)
    assert [(f.snapshot, f.message) for f in result.findings] == [
        (s.name, "kept") for s in scan.snapshots
    ]
