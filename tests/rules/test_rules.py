"""Every rule against its own fixture host, with the full findings compared to golden files."""

from __future__ import annotations

import importlib
import json
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from auditor.model import Host, HostScan, Severity
from auditor.rule import DOC_SECTIONS, Rule
from auditor.sources.live.scanner import scan_host
from testlab.pytest_fixtures import require
from tests.helpers import FIXTURES, REPO, fixture_uri
from tests.rules.golden import LOAD_ERRORS, RULES, audit_scans, finding_rows

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
    "SNAP009": ("missing-file", Severity.ERROR),
    "SNAP010": ("broken-chain", Severity.ERROR),
    "SNAP011": ("unmanaged-internal", Severity.ERROR),
    "SNAP012": ("unmanaged-overlay", Severity.WARNING),
    "SNAP013": ("snapshot-age", Severity.WARNING),
    "SNAP014": ("chain-depth", Severity.WARNING),
    "SNAP015": ("snapshot-count", Severity.WARNING),
    "SNAP016": ("naming", Severity.WARNING),
    "SNAP017": ("mixed-snapshot-tree", Severity.ERROR),
    "SNAP018": ("orphaned-overlay", Severity.WARNING),
    "HOST001": ("no-external-revert", Severity.WARNING),
}
OFF_BY_DEFAULT = {"SNAP016"}


def audit_fixture(path, images: Path | None = None, only: str | None = None):
    """Scan a fixture host (and run only the rule coded ONLY, if given). A fixture with an
    image recipe (CODE.images: qemu-img commands over @IMAGES@) gets its images made in
    IMAGES first, and its files checked."""
    fixture = FIXTURES / path
    recipe = fixture.with_suffix(".images")
    if not recipe.exists():
        scan = scan_host(fixture_uri(path))
    else:
        require(shutil.which("qemu-img"), "qemu-img is not installed")
        for line in recipe.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                argv = shlex.split(line.replace("@IMAGES@", str(images)))
                assert argv[0] == "qemu-img", "image recipes run qemu-img only"
                subprocess.run(argv, check=True, capture_output=True)
        node = images / fixture.name
        node.write_text(fixture.read_text().replace("@IMAGES@", str(images)))
        scan = scan_host(f"test://{node}", check_files=True)
    assert scan.host.error is None
    assert scan.skipped == ()
    return audit_scans([scan], fixture.with_suffix(".toml"), only)


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


def test_rules_off_by_default():
    assert {r.code for r in RULES if not r.enabled} == OFF_BY_DEFAULT


@pytest.mark.parametrize("rule", [r for r in RULES if r.scope == "host"], ids=lambda r: r.code)
def test_host_rule_fixture_matches_golden_findings(rule, golden):
    """Host rules judge facts about the host itself: their fixtures are host facts
    (CODE.hosts.json), named pass-*/fail-* like snapshots."""
    facts = json.loads((FIXTURES / "rules" / f"{rule.code}.hosts.json").read_text())
    result = audit_scans([HostScan(Host(**f)) for f in facts], Path("none"), rule.code)
    rows = [
        {"host": f.host, **row}
        for f, row in zip(result.findings, finding_rows(result), strict=True)
    ]
    golden(FIXTURES / "rules" / f"{rule.code}.expected.json", rows)
    assert {row["rule"] for row in rows} == {rule.code}
    fired = {row["host"] for row in rows}
    hosts = {f["hostname"]: f["uri"] for f in facts}
    assert fired == {uri for name, uri in hosts.items() if name.startswith("fail-")}
    assert fired and any(name.startswith("pass-") for name in hosts)


@pytest.mark.parametrize("rule", [r for r in RULES if r.scope != "host"], ids=lambda r: r.code)
def test_rule_fixture_matches_golden_findings(rule, golden, tmp_path):
    fixture = FIXTURES / "rules" / f"{rule.code}.xml"
    assert fixture.exists(), f"every rule needs a fixture host: {fixture}"
    result = audit_fixture(f"rules/{rule.code}.xml", tmp_path, rule.code)
    rows = finding_rows(result, tmp_path)
    golden(FIXTURES / "rules" / f"{rule.code}.expected.json", rows)

    # Names carry the expectation: pass-* must not trigger the rule, fail-*/warn-* must; so
    # a fixture without both a passing and a failing case fails here.
    names = {s.name for s in result.snapshots}
    assert {row["rule"] for row in rows} == {rule.code}
    fired = {row["snapshot"] for row in rows}
    if rule.scope == "snapshot":
        failing = {n for n in names if re.match(r"(fail|warn)-", n)}
        assert fired == failing
    else:  # a domain rule names what it found (an image, a tag): that name says fail-*
        failing = fired
        assert all(re.search(r"\b(fail|warn)-", f) and "pass-" not in f for f in fired)
    assert failing and any(n.startswith("pass-") for n in names)


def test_remediation_comes_from_the_rules_documentation():
    result = audit_fixture("rules/SNAP005.xml")
    (finding,) = result.findings
    assert finding.remediation.startswith(
        "A non-qcow2 overlay cannot name the snapshot's state as its backing file; that state "
        "is still the image the snapshot's embedded domain names (STATE_IMAGE). If it is "
        "needed, copy it out first"
    )


def test_seed_document_examples():
    """The supported example yields nothing; the unsupported one exactly SNAP001 + SNAP002;
    and since both are snapshots of one VM, its tree is mixed (SNAP017)."""
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
            "image": None,
        },
        {
            "rule": "SNAP002",
            "name": "internal-disk",
            "severity": "error",
            "domain": "vm-name",
            "snapshot": "sample-snapshot-name-2",
            "disk": "vda",
            "message": "disk vda is captured inside its own image (internal snapshot)",
            "image": None,
        },
        {
            "rule": "SNAP017",
            "name": "mixed-snapshot-tree",
            "severity": "error",
            "domain": "vm-name",
            "snapshot": "sample-snapshot-name-2",
            "disk": None,
            "message": "mixed snapshot tree: 1 internal snapshot and 1 external; libvirt "
            "refuses to delete an external snapshot whose parent is internal (older libvirt "
            "deleted the base image), and a revert across kinds strands overlays",
            "image": None,
        },
    ]


def test_every_rule_module_is_an_entry_point_and_every_entry_point_a_rule():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    points = project["project"]["entry-points"]["snapaudit.rules"]
    modules = {p.stem for p in (REPO / "rules").glob("*.py") if p.stem != "__init__"}
    assert {v.split(":")[0] for v in points.values()} == {f"auditor.rules.{m}" for m in modules}
    for name, value in points.items():
        module, function = value.split(":")
        loaded = getattr(importlib.import_module(module), function)
        assert isinstance(loaded, Rule), value
        assert loaded.name == name  # entry points are named after their rule


def test_docs_rules_table_matches_the_registry():
    page = (REPO / "docs" / "rules.md").read_text()
    rows = re.findall(r"^\| ([A-Z]+[0-9]{3}) \| ([a-z0-9-]+) \| ([a-z]+) \|", page, re.M)
    assert sorted(rows) == sorted((r.code, r.name, r.severity.value) for r in RULES)


def test_chain_depth_reads_each_snapshot_once():
    # A 20,000-deep chain: walking every snapshot's ancestry anew took quadratic time.
    import time

    from auditor.rules.chain_depth import chain_depth

    from auditor.model import Domain, Snapshot
    from auditor.rule import Context

    snapshots = tuple(
        Snapshot(
            "h",
            "d",
            "u",
            f"s{i}",
            "shutoff",
            None,
            f"s{i - 1}" if i else None,
            False,
            None,
            "no",
            None,
            (),
        )
        for i in range(20_000)
    )
    started = time.monotonic()
    found = list(
        chain_depth.check(Domain("h", "d", "u", (), snapshots), Context(params={"max_depth": 10}))
    )
    assert time.monotonic() - started < 1.0
    assert [(v.message, v.snapshot) for v in found] == [
        ("snapshot tree is 20000 levels deep (limit: 10)", "s19999")
    ]


def test_mixed_tree_names_the_snapshot_that_mixes_kinds_and_counts_each_snapshot_once():
    """A snapshot that is internal and external at once is named with what it holds of each
    kind; it is not counted as one snapshot of each."""
    from auditor.rules.mixed_tree import mixed_tree

    from auditor.model import Domain, Snapshot, SnapshotDisk
    from auditor.rule import Context

    def snap(name, memory, *modes, parent=None):
        disks = tuple(
            SnapshotDisk(f"vd{chr(97 + i)}", mode, None, None, "disk", False)
            for i, mode in enumerate(modes)
        )
        return Snapshot(
            "h", "d", "u", name, "shutoff", None, parent, False, None, memory, None, disks
        )

    def message(*snapshots):
        (found,) = mixed_tree.check(Domain("h", "d", "u", (), snapshots), Context())
        return found.message.split(";")[0]

    assert message(snap("x", "no", "internal", "external")) == (
        "mixed snapshot tree: snapshot 'x' mixes internal (vda) and external (vdb) disks"
    )
    assert message(
        snap("a", "internal", "internal", "no"),
        snap("x", "internal", "external", "internal", parent="a"),
        snap("y", "no", "internal", "external", parent="x"),
        snap("e", "no", "external", "external", parent="y"),
    ) == (
        "mixed snapshot tree: snapshot 'x' mixes internal (memory, vdb) and external (vda)"
        " state, as does 1 other snapshot, and the tree also holds 1 internal snapshot and"
        " 1 external"
    )


# Advice that deletes something: a snapshot (`virsh snapshot-delete`, `qemu-img snapshot -d`),
# an image. Each must come after a step that keeps the state (fix mode converts it, `qemu-img
# convert` copies it out), or be about snapshots no longer needed, or remove metadata only.
DELETES = re.compile(r"delet|snapshot -d\b|\bremove", re.I)
KEEPS = ("snapaudit fix", "qemu-img convert")
NOTHING_LOST = ("no longer needed", "--metadata")


@pytest.mark.parametrize("rule", [r for r in RULES if r.code in BUILT_IN], ids=lambda r: r.code)
def test_no_remediation_deletes_a_state_it_has_not_kept(rule):
    text = rule.remediation
    for match in DELETES.finditer(text):
        start = max(text.rfind(". ", 0, match.start()), text.rfind("; ", 0, match.start())) + 1
        ends = [i for i in (text.find(". ", match.end()), text.find("; ", match.end())) if i >= 0]
        end = min(ends, default=len(text))
        sentence = text[start:end]
        assert any(k in text[:end] for k in KEEPS) or any(n in sentence for n in NOTHING_LOST), (
            sentence
        )


@pytest.mark.parametrize("code", ["SNAP001", "SNAP002", "SNAP017"])
def test_what_fix_mode_converts_leads_with_fix_mode(code):
    """A dry run first, then --apply; memory snapshots are converted only with --drop-memory."""
    (rule,) = [r for r in RULES if r.code == code]
    command = "`snapaudit fix -c URI --domain VM" + " --drop-memory" * (code == "SNAP001") + "`"
    assert rule.remediation.startswith(command + " (VM shut off) shows the plan")
    assert "add `--apply` to run it" in rule.remediation


@pytest.mark.parametrize("rule", [r for r in RULES if r.code in BUILT_IN], ids=lambda r: r.code)
def test_a_remediation_that_commits_an_overlay_commits_only_that_one(rule):
    """`virsh blockcommit` without --shallow (or --base) merges the whole chain into its base,
    every snapshot state in it included."""
    text = rule.remediation
    assert "blockcommit" not in text or "--shallow" in text or "--base" in text
