"""The compliance workflow: configuration, selection, severities, parameters, waivers,
baselines and several outputs at once, through the CLI as users run it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from auditor.engine.registry import load_rules
from auditor.policy import config as config_module
from auditor.policy.config import ConfigError, find_config
from auditor.policy.selection import RuleIndex
from tests.helpers import fixture_uri, pinned, run_cli

SEED = fixture_uri("seed_examples.xml")
WHERE = ("vm-name", "sample-snapshot-name-2")
# The seed host's findings with the default configuration: (rule, severity, domain,
# snapshot, disk, message).
F001 = (
    "SNAP001",
    "error",
    *WHERE,
    None,
    "memory state is stored inside the disk image (internal snapshot)",
)
F002 = (
    "SNAP002",
    "error",
    *WHERE,
    "vda",
    "disk vda is captured inside its own image (internal snapshot)",
)
F013 = ("SNAP013", "warning", *WHERE, None, "snapshot is 540 days old (limit: 30 days)")
# The seed's two snapshots, one of each kind, are one VM's: a mixed tree.
MIXED = (
    "mixed snapshot tree: 1 internal snapshot and 1 external; libvirt refuses to delete an"
    " external snapshot whose parent is internal (older libvirt deleted the base image), and a"
    " revert across kinds strands overlays"
)
F017 = ("SNAP017", "error", *WHERE, None, MIXED)
SEED_TEXT = [
    f"{SEED}  vm-name/sample-snapshot-name-2  SNAP001 error    memory state is stored inside"
    " the disk image (internal snapshot)",
    f"{SEED}  vm-name/sample-snapshot-name-2  SNAP002 error    disk vda is captured inside its"
    " own image (internal snapshot)",
    f"{SEED}  vm-name/sample-snapshot-name-2  SNAP013 warning  snapshot is 540 days old"
    " (limit: 30 days)",
    f"{SEED}  vm-name/sample-snapshot-name-2  SNAP017 error    {MIXED}",
]


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def scan_json(*args: str, env=None) -> tuple[int, dict, str]:
    proc = run_cli("scan", *args, "--format", "json", env=env)
    return proc.returncode, json.loads(proc.stdout) if proc.stdout else {}, proc.stderr


def as_warning(finding: tuple) -> tuple:
    return (finding[0], "warning", *finding[2:])


def findings(report: dict) -> list[tuple]:
    keys = ("rule", "severity", "domain", "snapshot", "disk", "message")
    return [tuple(f[key] for key in keys) for f in report["findings"]]


def test_config_lookup_order(tmp_path, monkeypatch):
    local, system = tmp_path / "snapaudit.toml", tmp_path / "etc.toml"
    monkeypatch.setattr(config_module, "SEARCH_PATH", (local, system))
    assert find_config(None) == (None, ())
    system.write_text("")
    assert find_config(None) == (system, ())
    local.write_text("")
    assert find_config(None) == (local, ())
    explicit = tmp_path / "explicit.toml"
    explicit.write_text("")
    assert find_config(explicit) == (explicit, ())
    with pytest.raises(ConfigError, match=r"missing\.toml: configuration file not found"):
        find_config(tmp_path / "missing.toml")


def test_snapaudit_toml_in_the_working_directory_is_used(tmp_path):
    write(tmp_path / "snapaudit.toml", 'ignore = ["SNAP002"]\n')
    proc = subprocess_in(tmp_path, "scan", "-c", SEED, "--format", "json")
    assert (proc.returncode, proc.stderr) == (1, "")
    report = json.loads(proc.stdout)
    assert findings(report) == [F001, F013, F017]
    assert report["policy"]["sources"] == ["snapaudit.toml"]


def subprocess_in(cwd: Path, *args: str):
    return subprocess.run(
        [str(Path(sys.executable).parent / "snapaudit"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=pinned(),
        timeout=60,
    )


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            "colour = 1\n",
            ":1: unknown key 'colour' (known: select, ignore, fail_on, timeout, rules, "
            "waivers, waivers_file)",
        ),
        ('select = ["SNAP001"]\nignore = ["SNAP999"]\n', ":2: unknown rule, name or tag 'SNAP999'"),
        ("[rules.SNAP999]\nseverity = 'error'\n", ":1: unknown rule 'SNAP999'"),
        (
            "[rules.SNAP013]\nmax_age_days = 'thirty'\n",
            ":2: SNAP013 max_age_days must be int, not str",
        ),
        (
            "[rules.SNAP013]\nmax_age_days = true\n",
            ":2: SNAP013 max_age_days must be int, not bool",
        ),
        (
            "[rules.snapshot-age]\n\nmax_age = 3\n",
            ":3: unknown setting 'max_age' for SNAP013 (known: severity, max_age_days)",
        ),
        ("[rules.SNAP002]\nseverity = 'fatal'\n", ":2: severity must be error, warning or info"),
        (
            "[rules.naming]\npattern = '('\n",
            ":2: SNAP016 pattern is not a valid regular expression: missing ), unterminated "
            "subpattern at position 0",
        ),
        ("fail_on = 'sometimes'\n", ":1: fail_on must be one of error, warning, info, never"),
        ("a = 1\nb = = 2\n", ":2: Invalid value"),
        (
            "[[waivers]]\nrule = 'SNAP002'\nreason = 'x'\nowner = 'y'\n",
            ":1: a waiver needs 'expires'",
        ),
        (
            "[[waivers]]\nrule = 'SNAP002'\nreason = 'x'\nowner = 'y'\nexpires = 'soon'\n",
            ":5: waiver expires must be a date (YYYY-MM-DD)",
        ),
        (
            "[[waivers]]\nrule = 'SNAP002'\nreason = 'x'\nowner = 'y'\nexpires = 2030-01-01\n"
            "[[waivers]]\nrule = 'bogus'\nreason = 'x'\nowner = 'y'\nexpires = 2030-01-01\n",
            ":7: unknown rule 'bogus'",
        ),
    ],
)
def test_bad_configuration_is_one_line_naming_file_and_line_exit_2(tmp_path, text, error):
    path = write(tmp_path / "bad.toml", text)
    proc = run_cli("scan", "-c", SEED, "--config", str(path))
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == f"snapaudit: {path}{error}\n"
    checked = run_cli("config", "--config", str(path))
    assert (checked.returncode, checked.stdout, checked.stderr) == (2, "", proc.stderr)


def test_config_show_prints_every_value_and_its_origin(tmp_path):
    path = write(
        tmp_path / "site.toml",
        """\
        ignore = ["SNAP008"]

        [rules.SNAP013]
        max_age_days = 14
        severity = "error"

        [[waivers]]
        rule = "internal-disk"
        domain = "qa-*"
        reason = "rebuilt weekly"
        owner = "qa@example.com"
        expires = 2030-06-30
        """,
    )
    proc = run_cli("config", "--show", "--config", str(path))
    assert (proc.returncode, proc.stderr) == (0, "")
    # Keys padded to the longest, rules.SNAP016.require_description (33 characters).
    assert proc.stdout == textwrap.dedent(
        f"""\
        # configuration files: {path}
        select                            = (every rule that is on by default)  # default
        ignore                            = ["SNAP008"]  # {path}:1
        fail_on                           = "error"  # default
        timeout                           = 300  # default
        rules.HOST001                     = on (no-external-revert)  # select/ignore
        rules.HOST001.severity            = "warning"  # default
        rules.SNAP001                     = on (internal-memory)  # select/ignore
        rules.SNAP001.severity            = "error"  # default
        rules.SNAP002                     = on (internal-disk)  # select/ignore
        rules.SNAP002.severity            = "error"  # default
        rules.SNAP003                     = on (non-file-storage)  # select/ignore
        rules.SNAP003.severity            = "error"  # default
        rules.SNAP004                     = on (unquiesced-disk-only)  # select/ignore
        rules.SNAP004.severity            = "error"  # default
        rules.SNAP005                     = on (overlay-not-qcow2)  # select/ignore
        rules.SNAP005.severity            = "error"  # default
        rules.SNAP006                     = on (disk-excluded)  # select/ignore
        rules.SNAP006.severity            = "warning"  # default
        rules.SNAP007                     = on (manual-snapshot)  # select/ignore
        rules.SNAP007.severity            = "warning"  # default
        rules.SNAP008                     = off (no-domain-definition)  # select/ignore
        rules.SNAP008.severity            = "warning"  # default
        rules.SNAP009                     = on (missing-file)  # select/ignore
        rules.SNAP009.severity            = "error"  # default
        rules.SNAP010                     = on (broken-chain)  # select/ignore
        rules.SNAP010.severity            = "error"  # default
        rules.SNAP011                     = on (unmanaged-internal)  # select/ignore
        rules.SNAP011.severity            = "error"  # default
        rules.SNAP012                     = on (unmanaged-overlay)  # select/ignore
        rules.SNAP012.severity            = "warning"  # default
        rules.SNAP013                     = on (snapshot-age)  # select/ignore
        rules.SNAP013.severity            = "error"  # {path}:5
        rules.SNAP013.max_age_days        = 14  # {path}:4
        rules.SNAP014                     = on (chain-depth)  # select/ignore
        rules.SNAP014.severity            = "warning"  # default
        rules.SNAP014.max_depth           = 8  # default
        rules.SNAP015                     = on (snapshot-count)  # select/ignore
        rules.SNAP015.severity            = "warning"  # default
        rules.SNAP015.max_snapshots       = 16  # default
        rules.SNAP016                     = off (naming)  # select/ignore
        rules.SNAP016.severity            = "warning"  # default
        rules.SNAP016.pattern             = ""  # default
        rules.SNAP016.require_description = false  # default
        rules.SNAP017                     = on (mixed-snapshot-tree)  # select/ignore
        rules.SNAP017.severity            = "error"  # default
        rules.SNAP018                     = on (orphaned-overlay)  # select/ignore
        rules.SNAP018.severity            = "warning"  # default
        """
    ) + (
        "waiver                            = SNAP002 host=* domain=qa-* snapshot=*"
        f" expires=2030-06-30 owner=qa@example.com  # {path}:7\n"
    )
    checked = run_cli("config", "--config", str(path))
    assert (checked.returncode, checked.stdout) == (0, f"configuration OK: {path}\n")


@pytest.mark.parametrize(
    ("args", "found"),
    [
        ([], [F001, F002, F013, F017]),
        (["--select", "internal"], [F001, F002, F017]),  # a tag
        (["--select", "internal-memory,SNAP013"], [F001, F013]),  # name, code
        (["--ignore", "policy"], [F001, F002, F017]),
        (["--select", "ALL", "--ignore", "SNAP001", "--ignore", "snapshot-age"], [F002, F017]),
        # Codes and names in any case.
        (["--select", "Internal-Memory,snap013"], [F001, F013]),
        (["--select", "ALL", "--ignore", "snap001", "--ignore", "SNAPSHOT-AGE"], [F002, F017]),
    ],
)
def test_select_and_ignore_by_code_name_or_tag(args, found):
    code, report, stderr = scan_json("-c", SEED, *args)
    assert (code, stderr) == (1, "")
    assert findings(report) == found


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["--select", "SNAP001,frobnicate"],
            "--select 'frobnicate': unknown rule, name or tag; `snapaudit rules` lists them",
        ),
        (
            ["--select", "SNAP02"],
            "--select 'SNAP02': unknown rule, name or tag; did you mean SNAP002?",
        ),
        (
            ["--ignore", "snap17"],
            "--ignore 'snap17': unknown rule, name or tag; did you mean SNAP017?",
        ),
        (
            ["--select", "internal-dsk"],
            "--select 'internal-dsk': unknown rule, name or tag; did you mean internal-disk?",
        ),
    ],
)
def test_unknown_selector_on_the_command_line_exits_2(args, line):
    proc = run_cli("scan", "-c", SEED, *args)
    assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", f"snapaudit: {line}\n")


def test_severity_override_and_parameters(tmp_path):
    path = write(
        tmp_path / "c.toml",
        """\
        [rules.internal-memory]
        severity = "warning"
        [rules.internal-disk]
        severity = "warning"
        [rules.mixed-snapshot-tree]
        severity = "warning"
        [rules.SNAP013]
        max_age_days = 600
        """,
    )
    code, report, _ = scan_json("-c", SEED, "--config", str(path))
    assert code == 0  # nothing at error any more
    # 540 days old: under the 600-day limit.
    assert findings(report) == [as_warning(F001), as_warning(F002), as_warning(F017)]
    assert [(r["code"], r["severity"], r["params"]) for r in report["policy"]["rules"]] == [
        ("HOST001", "warning", {}),
        ("SNAP001", "warning", {}),
        ("SNAP002", "warning", {}),
        ("SNAP003", "error", {}),
        ("SNAP004", "error", {}),
        ("SNAP005", "error", {}),
        ("SNAP006", "warning", {}),
        ("SNAP007", "warning", {}),
        ("SNAP008", "warning", {}),
        ("SNAP009", "error", {}),
        ("SNAP010", "error", {}),
        ("SNAP011", "error", {}),
        ("SNAP012", "warning", {}),
        ("SNAP013", "warning", {"max_age_days": 600}),
        ("SNAP014", "warning", {"max_depth": 8}),
        ("SNAP015", "warning", {"max_snapshots": 16}),
        ("SNAP017", "warning", {}),
        ("SNAP018", "warning", {}),
    ]  # every rule that is on by default; SNAP016 is off
    assert report["policy"]["sources"] == [str(path)]
    fail_on_warning = run_cli("scan", "-c", SEED, "--config", str(path), "--fail-on", "warning")
    assert fail_on_warning.returncode == 1


WAIVERS = """\
    [[waivers]]
    rule = "SNAP002"
    domain = "vm-*"
    snapshot = "sample-snapshot-name-2"
    reason = "kept until the migration"
    owner = "ops@example.com"
    expires = 2099-12-31

    [[waivers]]
    rule = "internal-memory"
    host = "{host}"
    reason = "expired exception"
    owner = "dba@example.com"
    expires = 2020-01-01

    [[waivers]]
    rule = "SNAP005"
    reason = "nothing to waive"
    owner = "ops@example.com"
    expires = 2099-12-31
    """


def test_waivers_active_expired_and_stale(tmp_path):
    path = write(tmp_path / "w.toml", WAIVERS.format(host=SEED))
    code, report, stderr = scan_json("-c", SEED, "--config", str(path))
    assert code == 1  # the expired waiver no longer covers SNAP001
    assert [(f["rule"], f["waived"] and f["waived"]["reason"]) for f in report["findings"]] == [
        ("SNAP001", None),
        ("SNAP002", "kept until the migration"),
        ("SNAP013", None),
        ("SNAP017", None),
    ]
    assert [(w["rule"], w["status"], w["matched"], w["origin"]) for w in report["waivers"]] == [
        ("SNAP002", "active", 1, f"{path}:1"),
        ("SNAP001", "expired", 1, f"{path}:9"),
        ("SNAP005", "stale", 0, f"{path}:16"),
    ]
    assert stderr == (
        f"snapaudit: expired waiver for SNAP001 ({path}:9, expires 2020-01-01)\n"
        f"snapaudit: stale waiver for SNAP005 ({path}:16, expires 2099-12-31)\n"
    )
    text = run_cli("scan", "-c", SEED, "--config", str(path)).stdout.splitlines()
    assert text == [
        SEED_TEXT[0],
        SEED_TEXT[1] + "  [waived until 2099-12-31: kept until the migration]",
        SEED_TEXT[2],
        SEED_TEXT[3],
        f"expired waiver: SNAP001 host={SEED} domain=* snapshot=* (expires 2020-01-01,"
        f" dba@example.com, {path}:9): matched 1",
        f"stale waiver: SNAP005 host=* domain=* snapshot=* (expires 2099-12-31,"
        f" ops@example.com, {path}:16): matched 0",
        "1 host, 1 domain, 2 snapshots: 1 compliant, 1 noncompliant; findings: 3 error,"
        " 1 warning, 0 info (1 waived)",
    ]


def test_config_says_which_waivers_have_expired_and_exits_1(tmp_path):
    path = write(tmp_path / "w.toml", WAIVERS.format(host=SEED))
    expired = f"snapaudit: expired waiver for SNAP001 ({path}:9, expires 2020-01-01)\n"
    checked = run_cli("config", "--config", str(path))
    assert (checked.returncode, checked.stdout, checked.stderr) == (
        1,
        f"configuration OK: {path}\n",
        expired,
    )
    shown = run_cli("config", "--show", "--config", str(path))
    assert (shown.returncode, shown.stderr) == (1, expired)
    # Judged at the time a scan would judge it (--as-of, SNAPAUDIT_AS_OF): not yet expired.
    before = run_cli("config", "--config", str(path), "--as-of", "2019-12-31")
    assert (before.returncode, before.stderr) == (0, "")
    before = run_cli("config", "--config", str(path), env={"SNAPAUDIT_AS_OF": "@1577750400"})
    assert (before.returncode, before.stderr) == (0, "")


def test_a_waived_error_does_not_fail_the_gate(tmp_path):
    path = write(
        tmp_path / "w.toml",
        """\
        [[waivers]]
        rule = "SNAP001"
        reason = "r"
        owner = "o"
        expires = 2099-01-01
        [[waivers]]
        rule = "SNAP002"
        reason = "r"
        owner = "o"
        expires = 2099-01-01
        [[waivers]]
        rule = "SNAP017"
        reason = "r"
        owner = "o"
        expires = 2099-01-01
        """,
    )
    proc = run_cli("scan", "-c", SEED, "--config", str(path))
    assert proc.returncode == 0, proc.stdout
    assert (
        run_cli("scan", "-c", SEED, "--config", str(path), "--fail-on", "warning").returncode == 1
    )


def test_waivers_file_beside_the_configuration(tmp_path):
    write(tmp_path / "waivers.toml", WAIVERS.format(host="*"))
    path = write(tmp_path / "c.toml", 'waivers_file = "waivers.toml"\n')
    _, report, _ = scan_json("-c", SEED, "--config", str(path))
    waivers = tmp_path / "waivers.toml"
    assert [(w["rule"], w["status"], w["matched"], w["origin"]) for w in report["waivers"]] == [
        ("SNAP002", "active", 1, f"{waivers}:1"),
        ("SNAP001", "expired", 1, f"{waivers}:9"),
        ("SNAP005", "stale", 0, f"{waivers}:16"),
    ]
    assert report["policy"]["sources"] == [str(path), str(tmp_path / "waivers.toml")]


def test_baseline_gates_only_on_new_findings(tmp_path):
    baseline = tmp_path / "baseline.json"
    first = run_cli("scan", "-c", SEED, "--write-baseline", str(baseline))
    # Recording a baseline accepts the findings: they fail only a gate asked for.
    assert (first.returncode, first.stderr) == (0, "")
    gated = run_cli("scan", "-c", SEED, "--write-baseline", str(baseline), "--fail-on", "error")
    assert (gated.returncode, gated.stderr) == (1, "")
    # A host that could not be read still fails it: the baseline would miss its findings.
    missing = "test:///nonexistent/node.xml"
    other = tmp_path / "other.json"
    incomplete = run_cli("scan", "-c", SEED, "-c", missing, "--write-baseline", str(other))
    assert incomplete.returncode == 3
    recorded = json.loads(baseline.read_text())
    assert sorted(recorded) == ["findings", "schema"]
    assert recorded["schema"] == "snapaudit/baseline/v1"
    # The fingerprint is the finding's own, as the JSON report gives it.
    prints = {f["rule"]: f["fingerprint"] for f in scan_json("-c", SEED)[1]["findings"]}
    assert recorded["findings"] == [
        {
            "fingerprint": prints[rule],
            "rule": rule,
            "host": "vm",  # the host's name, from the fixture's capabilities
            "domain": "vm-name",
            "snapshot": "sample-snapshot-name-2",
            "disk": disk,
        }
        for rule, disk in (
            ("SNAP001", None),
            ("SNAP002", "vda"),
            ("SNAP013", None),
            ("SNAP017", None),
        )
    ]
    # Same host again: everything is known, the gate passes.
    code, report, _ = scan_json("-c", SEED, "--baseline", str(baseline))
    assert code == 0
    assert report["baseline"] == {"path": str(baseline), "known": 4, "new": 0, "fixed": 0}
    assert [f["baselined"] for f in report["findings"]] == [True, True, True, True]
    # A host with other findings: they are new and fail; the seed's four count as fixed.
    code, report, _ = scan_json("-c", fixture_uri("rules/SNAP005.xml"), "--baseline", str(baseline))
    assert code == 1
    assert report["baseline"] == {"path": str(baseline), "known": 0, "new": 1, "fixed": 4}
    text = run_cli("scan", "-c", SEED, "--baseline", str(baseline)).stdout.splitlines()
    assert text == [
        *(line + "  [baselined]" for line in SEED_TEXT),
        "1 host, 1 domain, 2 snapshots: 1 compliant, 1 noncompliant; findings: 3 error,"
        " 1 warning, 0 info (4 baselined, 0 fixed since the baseline)",
    ]


def test_bad_baseline_exits_2(tmp_path):
    bad = write(tmp_path / "b.json", '{"schema": "something/else"}')
    proc = run_cli("scan", "-c", SEED, "--baseline", str(bad))
    assert (proc.returncode, proc.stderr) == (
        2,
        f"snapaudit: {bad}: not a snapaudit baseline (schema snapaudit/baseline/v1)\n",
    )


def test_several_outputs_at_once(tmp_path):
    proc = run_cli(
        "scan",
        "-c",
        SEED,
        "--format",
        f"json:{tmp_path}/r.json",
        "--format",
        f"html:{tmp_path}/r.html",
        "--format",
        "text",
    )
    assert (proc.returncode, proc.stderr) == (1, "")
    assert proc.stdout == run_cli("scan", "-c", SEED).stdout
    # Each file holds exactly what that format alone prints.
    for name in ("json", "html"):
        alone = run_cli("scan", "-c", SEED, "--format", name)
        assert (tmp_path / f"r.{name}").read_text() == alone.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--format", "json", "--format", "text"],
            "--format: only one format can go to standard output",
        ),
        (
            ["--format", "yaml"],
            "--format 'yaml': not one of text, json, html, sarif, junit, prometheus",
        ),
        (
            ["--format", "json:a.json", "-o", "b.json"],
            "-o needs exactly one --format without a file",
        ),
    ],
)
def test_output_usage_errors_exit_2(args, message):
    proc = run_cli("scan", "-c", SEED, *args)
    assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", f"snapaudit: {message}\n")


def test_one_lookup_finds_codes_and_names_in_any_case():
    rules, _ = load_rules()
    index = RuleIndex(rules)
    for rule in rules:
        for ident in (rule.code, rule.code.lower(), rule.name, rule.name.upper()):
            assert index.find(ident) is rule, ident
    assert index.find("Snapshot-Age").code == "SNAP013"
    assert [index.find(i) for i in ("SNAP999", "snapshot", "internal", "ALL", "")] == [None] * 5
    # Selectors: a code or name in any case, a tag, ALL; nothing else.
    assert [index.matches(s) for s in ("snap013", "Internal-Disk", "internal", "ALL")] == [True] * 4
    assert [index.matches(s) for s in ("SNAP999", "frobnicate")] == [False, False]


def test_configuration_names_rules_in_any_case(tmp_path):
    path = write(
        tmp_path / "c.toml",
        """\
        select = ["Internal-Memory", "snap002"]

        [rules.internal-MEMORY]
        severity = "warning"

        [[waivers]]
        rule = "Internal-Disk"
        reason = "r"
        owner = "o"
        expires = 2099-01-01
        """,
    )
    code, report, stderr = scan_json("-c", SEED, "--config", str(path))
    assert (code, stderr) == (0, "")
    assert findings(report) == [as_warning(F001), F002]
    assert [f["waived"] and f["waived"]["rule"] for f in report["findings"]] == [None, "SNAP002"]
    assert [(r["code"], r["severity"]) for r in report["policy"]["rules"]] == [
        ("SNAP001", "warning"),
        ("SNAP002", "error"),
    ]
    shown = run_cli("config", "--show", "--config", str(path)).stdout.splitlines()
    assert [line for line in shown if "SNAP001.severity" in line or "waiver" in line] == [
        f'rules.SNAP001.severity            = "warning"  # {path}:4',
        f"waiver                            = SNAP002 host=* domain=* snapshot=*"
        f" expires=2099-01-01 owner=o  # {path}:6",
    ]


@pytest.mark.parametrize("ident", ["snap002", "Snap002", "INTERNAL-DISK", " internal-disk "])
def test_explain_finds_a_rule_by_code_or_name_in_any_case(ident):
    expected = run_cli("explain", "SNAP002")
    assert expected.stdout.startswith("SNAP002 internal-disk (error)\n")
    proc = run_cli("explain", ident)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, expected.stdout, "")
