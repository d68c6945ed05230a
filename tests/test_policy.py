"""The compliance workflow: configuration, selection, severities, parameters, waivers,
baselines and several outputs at once, through the CLI as users run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import CLOCK, fixture_uri, run_cli

from auditor.policy import config as config_module
from auditor.policy.config import ConfigError, find_config

SEED = fixture_uri("seed_examples.xml")


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def scan_json(*args: str, env=None) -> tuple[int, dict, str]:
    proc = run_cli("scan", *args, "--format", "json", env=env)
    return proc.returncode, json.loads(proc.stdout) if proc.stdout else {}, proc.stderr


def rule_counts(report: dict) -> dict[str, int]:
    counts: dict[str, int] = {}
    for finding in report["findings"]:
        counts[finding["rule"]] = counts.get(finding["rule"], 0) + 1
    return counts


def test_config_lookup_order(tmp_path, monkeypatch):
    local, system = tmp_path / "snapaudit.toml", tmp_path / "etc.toml"
    monkeypatch.setattr(config_module, "SEARCH_PATH", (local, system))
    assert find_config(None) is None
    system.write_text("")
    assert find_config(None) == system
    local.write_text("")
    assert find_config(None) == local
    explicit = tmp_path / "explicit.toml"
    explicit.write_text("")
    assert find_config(explicit) == explicit
    with pytest.raises(ConfigError, match=r"missing\.toml: configuration file not found"):
        find_config(tmp_path / "missing.toml")


def test_snapaudit_toml_in_the_working_directory_is_used(tmp_path):
    write(tmp_path / "snapaudit.toml", 'ignore = ["SNAP002"]\n')
    proc = subprocess_in(tmp_path, "scan", "-c", SEED, "--format", "json")
    assert sorted(rule_counts(json.loads(proc.stdout))) == ["SNAP001", "SNAP013"]


def subprocess_in(cwd: Path, *args: str):
    return subprocess.run(
        [str(Path(sys.executable).parent / "snapaudit"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "SOURCE_DATE_EPOCH": CLOCK},
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
    assert run_cli("config", "--config", str(path)).returncode == 2


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
    assert proc.returncode == 0
    lines = [" ".join(line.split()) for line in proc.stdout.splitlines()]
    assert lines[0] == f"# configuration files: {path}"
    assert lines[1] == "select = (every rule that is on by default) # default"
    assert f'ignore = ["SNAP008"] # {path}:1' in lines
    assert "rules.SNAP008 = off (no-domain-definition) # select/ignore" in lines
    assert "rules.SNAP016 = off (naming) # select/ignore" in lines
    assert f"rules.SNAP013.max_age_days = 14 # {path}:4" in lines
    assert f'rules.SNAP013.severity = "error" # {path}:5' in lines
    assert 'rules.SNAP001.severity = "error" # default' in lines
    assert lines[-1] == (
        "waiver = SNAP002 host=* domain=qa-* snapshot=* expires=2030-06-30"
        f" owner=qa@example.com # {path}:7"
    )
    checked = run_cli("config", "--config", str(path))
    assert (checked.returncode, checked.stdout) == (0, f"configuration OK: {path}\n")


@pytest.mark.parametrize(
    ("args", "rules"),
    [
        ([], {"SNAP001": 1, "SNAP002": 1, "SNAP013": 1}),
        (["--select", "internal"], {"SNAP001": 1, "SNAP002": 1}),  # a tag
        (["--select", "internal-memory,SNAP013"], {"SNAP001": 1, "SNAP013": 1}),  # name, code
        (["--ignore", "policy"], {"SNAP001": 1, "SNAP002": 1}),
        (["--select", "ALL", "--ignore", "SNAP001", "--ignore", "snapshot-age"], {"SNAP002": 1}),
    ],
)
def test_select_and_ignore_by_code_name_or_tag(args, rules):
    code, report, _ = scan_json("-c", SEED, *args)
    assert rule_counts(report) == rules
    assert code == 1


def test_unknown_selector_on_the_command_line_exits_2():
    proc = run_cli("scan", "-c", SEED, "--select", "SNAP001,frobnicate")
    assert (proc.returncode, proc.stderr) == (
        2,
        "snapaudit: unknown rule, name or tag 'frobnicate' on the command line\n",
    )


def test_severity_override_and_parameters(tmp_path):
    path = write(
        tmp_path / "c.toml",
        """\
        [rules.internal-memory]
        severity = "warning"
        [rules.internal-disk]
        severity = "warning"
        [rules.SNAP013]
        max_age_days = 600
        """,
    )
    code, report, _ = scan_json("-c", SEED, "--config", str(path))
    assert code == 0  # nothing at error any more
    assert [(f["rule"], f["severity"]) for f in report["findings"]] == [
        ("SNAP001", "warning"),
        ("SNAP002", "warning"),
    ]  # 540 days old: under the 600-day limit
    policy = {r["code"]: r for r in report["policy"]["rules"]}
    assert policy["SNAP013"] == {
        "code": "SNAP013",
        "name": "snapshot-age",
        "severity": "warning",
        "params": {"max_age_days": 600},
    }
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
    assert text[1].endswith("  [waived until 2099-12-31: kept until the migration]")
    assert text[-1].endswith("findings: 2 error, 1 warning, 0 info (1 waived)")


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
    assert [w["status"] for w in report["waivers"]] == ["active", "expired", "stale"]
    assert report["policy"]["sources"] == [str(path), str(tmp_path / "waivers.toml")]


def test_baseline_gates_only_on_new_findings(tmp_path):
    baseline = tmp_path / "baseline.json"
    first = run_cli("scan", "-c", SEED, "--write-baseline", str(baseline))
    assert first.returncode == 1
    recorded = json.loads(baseline.read_text())
    assert recorded["schema"] == "snapaudit/baseline/v1"
    assert [(e["rule"], e["domain"], e["snapshot"], e["disk"]) for e in recorded["findings"]] == [
        ("SNAP001", "vm-name", "sample-snapshot-name-2", None),
        ("SNAP002", "vm-name", "sample-snapshot-name-2", "vda"),
        ("SNAP013", "vm-name", "sample-snapshot-name-2", None),
    ]
    # Same host again: everything is known, the gate passes.
    code, report, _ = scan_json("-c", SEED, "--baseline", str(baseline))
    assert code == 0
    assert report["baseline"] == {"path": str(baseline), "known": 3, "new": 0, "fixed": 0}
    assert all(f["baselined"] for f in report["findings"])
    # A host with other findings: they are new and fail; the seed's three count as fixed.
    code, report, _ = scan_json("-c", fixture_uri("rules/SNAP005.xml"), "--baseline", str(baseline))
    assert code == 1
    assert report["baseline"] == {"path": str(baseline), "known": 0, "new": 1, "fixed": 3}
    text = run_cli("scan", "-c", SEED, "--baseline", str(baseline)).stdout.splitlines()
    assert text[-1].endswith("(3 baselined, 0 fixed since the baseline)")


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
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[-1].startswith("1 host, 1 domain, 2 snapshots")
    assert json.loads((tmp_path / "r.json").read_text())["summary"]["snapshots"] == 2
    assert (tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "json", "--format", "text"], "only one format can go to standard output"),
        (["--format", "yaml"], "unknown format 'yaml'"),
        (
            ["--format", "json:a.json", "-o", "b.json"],
            "-o needs exactly one --format without a file",
        ),
    ],
)
def test_output_usage_errors_exit_2(args, message):
    proc = run_cli("scan", "-c", SEED, *args)
    assert proc.returncode == 2
    assert message in proc.stderr
