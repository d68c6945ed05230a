"""Every rule against its own fixture host, with the full findings compared to golden files."""

from __future__ import annotations

import dataclasses
import re

import pytest
from conftest import FIXTURES, fixture_uri

from auditor.engine import audit
from auditor.model import Severity
from auditor.registry import load_rules
from auditor.rule import DOC_SECTIONS
from auditor.scanner import scan_host

RULES, LOAD_ERRORS = load_rules()

# The public contract of the built-in rules: codes, names and default severities.
BUILT_IN = {
    "SNAP001": ("internal-memory", Severity.ERROR),
    "SNAP002": ("internal-disk", Severity.ERROR),
    "SNAP003": ("non-file-storage", Severity.ERROR),
    "SNAP004": ("unquiesced-disk-only", Severity.ERROR),
    "SNAP005": ("overlay-not-qcow2", Severity.ERROR),
    "SNAP006": ("disk-excluded", Severity.WARNING),
    "SNAP007": ("manual-snapshot", Severity.WARNING),
    "SNAP008": ("no-domain-definition", Severity.WARNING),
}


def audit_fixture(path):
    scan = scan_host(fixture_uri(path))
    assert scan.host.error is None
    assert scan.skipped == ()
    return audit([scan], RULES)


def finding_rows(result):
    """Findings without the host URI, which depends on where the repository is checked out."""
    rows = []
    for finding in result.findings:
        row = dataclasses.asdict(finding)
        del row["host"], row["remediation"]
        row["severity"] = finding.severity.value
        rows.append(row)
    return rows


def test_built_in_rules_load_with_their_public_codes_names_and_severities():
    assert LOAD_ERRORS == ()
    assert {r.code: (r.name, r.severity) for r in RULES} == BUILT_IN


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.code)
def test_rule_is_documented(rule):
    assert rule.summary and rule.summary.endswith(".")
    assert list(rule.sections) == list(DOC_SECTIONS)
    assert all(rule.sections[s].strip() for s in DOC_SECTIONS)
    assert "\n" not in rule.remediation and rule.remediation
    assert rule.tags


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.code)
def test_rule_fixture_matches_golden_findings(rule, golden):
    fixture = FIXTURES / "rules" / f"{rule.code}.xml"
    assert fixture.exists(), f"every rule needs a fixture host: {fixture}"
    result = audit_fixture(f"rules/{rule.code}.xml")
    golden(FIXTURES / "rules" / f"{rule.code}.expected.json", finding_rows(result))

    # Snapshot names carry the expectation: pass-* must not trigger the rule, fail-*/warn-*
    # must; so a fixture without both a passing and a failing case fails here.
    names = {s.name for s in result.snapshots}
    fired = {f.snapshot for f in result.findings if f.rule == rule.code}
    failing = {n for n in names if re.match(r"(fail|warn)-", n)}
    passing = {n for n in names if n.startswith("pass-")}
    assert failing and passing
    assert fired == failing


def test_remediation_comes_from_the_rules_documentation():
    result = audit_fixture("rules/SNAP005.xml")
    (finding,) = result.findings
    assert finding.remediation == (
        "Recreate the snapshot with qcow2 overlays "
        "(`--diskspec vda,snapshot=external,driver=qcow2`) and delete the one with the wrong "
        "overlay format."
    )


def test_seed_document_examples():
    """The supported example yields nothing; the unsupported one exactly SNAP001 + SNAP002."""
    result = audit_fixture("seed_examples.xml")
    assert finding_rows(result) == [
        {
            "rule": "SNAP001",
            "name": "internal-memory",
            "severity": "error",
            "domain": "vm-name",
            "snapshot": "sample-snapshot-name-2",
            "disk": None,
            "message": "memory state is stored inside the disk image (internal snapshot)",
        },
        {
            "rule": "SNAP002",
            "name": "internal-disk",
            "severity": "error",
            "domain": "vm-name",
            "snapshot": "sample-snapshot-name-2",
            "disk": "vda",
            "message": "disk vda is captured inside its own image (internal snapshot)",
        },
    ]
