"""Malformed reports, baselines and configuration files: one line naming the file (and the
field), exit 2, never a traceback. Every case here crashed once; each runs the real command."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from auditor.inputs import MAX_DEPTH, read_json
from auditor.reports import FORMATS, render
from auditor.reports.loader import ReportError, load_report
from auditor.reports.validate import KEYWORDS, report_schema
from tests.helpers import run_cli
from tests.sample_results import sample_result


@pytest.fixture(scope="module")
def demo_text(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("demo") / "demo.json"
    proc = run_cli("scan", "--demo", "-f", "json", "-o", str(path))
    assert proc.returncode == 1, proc.stderr  # the demo host has error findings
    return path.read_text()


@pytest.fixture
def demo_report(demo_text) -> dict:
    return json.loads(demo_text)


def write(tmp_path: Path, name: str, document: dict | str) -> Path:
    path = tmp_path / name
    text = document if isinstance(document, str) else json.dumps(document)
    path.write_text(text, encoding="utf-8")
    return path


def set_field(document: dict, dotted: str, value) -> dict:
    copy = json.loads(json.dumps(document))
    *parents, last = dotted.split(".")
    node = copy
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[int(last) if isinstance(node, list) else last] = value
    return copy


@pytest.mark.parametrize(
    ("field", "value", "command", "problem"),
    [
        ("generated_at", None, ["merge", "-f", "junit"], "generated_at: expected string, got null"),
        (
            "hosts.0.hostname",
            5,
            ["diff"],
            "hosts[0].hostname: expected string or null, got integer",
        ),
        (
            "duration",
            "fast",
            ["merge", "-f", "prometheus"],
            "duration: expected number or null, got string",
        ),
        (
            "findings.0.message",
            "\ud800",
            ["merge", "-o", "OUT"],
            "findings[0].message: not Unicode text (a lone surrogate)",
        ),
        (
            "generated_at",
            "2025-02-30T00:00:00Z",
            ["diff"],
            "generated_at: '2025-02-30T00:00:00Z' is not a valid date-time",
        ),
        (
            "findings.0.severity",
            "fatal",
            ["merge"],
            "findings[0].severity: 'fatal' is not one of error, warning, info",
        ),
        ("summary.hosts", -1, ["diff"], "summary.hosts: -1 is below 0"),
        (
            "snapshots.0.disks.0.readonly",
            0,
            ["diff"],
            "snapshots[0].disks[0].readonly: expected boolean, got integer",
        ),
        ("hosts.0", "qemu:///system", ["merge"], "hosts[0]: expected object, got string"),
    ],
)
def test_a_malformed_field_is_named_and_exit_2(
    tmp_path, demo_report, field, value, command, problem
):
    path = write(tmp_path, "bad.json", set_field(demo_report, field, value))
    out = tmp_path / "out.json"
    args = [str(out) if a == "OUT" else a for a in command]
    args += [str(path), str(path)] if command == ["diff"] else [str(path)]
    proc = run_cli(*args)
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        2,
        "",
        f"snapaudit: {path}: malformed snapaudit report: {problem}\n",
    )
    assert not out.exists()


def test_a_missing_field_is_named(tmp_path, demo_report):
    del demo_report["hosts"][0]["hostname"]
    path = write(tmp_path, "bad.json", demo_report)
    proc = run_cli("merge", str(path))
    assert (proc.returncode, proc.stderr) == (
        2,
        f"snapaudit: {path}: malformed snapaudit report: hosts[0]: missing 'hostname'\n",
    )


def test_deep_nesting_is_refused_before_parsing(tmp_path, demo_report):
    deep = write(tmp_path, "deep.json", "[" * 200_000 + "]" * 200_000)
    report = write(tmp_path, "ok.json", demo_report)
    proc = run_cli("diff", str(deep), str(report))
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        2,
        "",
        f"snapaudit: {deep}: not a snapaudit report (nested more than {MAX_DEPTH} deep)\n",
    )
    proc = run_cli("scan", "--demo", "--baseline", str(deep))
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        2,
        "",
        f"snapaudit: {deep}: not a snapaudit baseline (nested more than {MAX_DEPTH} deep)\n",
    )


def test_brackets_inside_strings_are_not_nesting(tmp_path, demo_report):
    demo_report["findings"][0]["message"] = "[{" * 100 + '"[' * 100
    path = write(tmp_path, "ok.json", demo_report)
    assert '\\"[\\"[' in path.read_text()
    assert load_report(path).findings[0].message == "[{" * 100 + '"[' * 100


def test_a_5000_digit_integer_is_refused(tmp_path, demo_report):
    text = json.dumps(demo_report).replace('"hosts": 1,', '"hosts": ' + "9" * 5000 + ",", 1)
    assert "9" * 5000 in text
    path = write(tmp_path, "big.json", text)
    proc = run_cli("diff", str(path), str(path))
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        2,
        "",
        f"snapaudit: {path}: not a snapaudit report (an integer of 5000 digits)\n",
    )


@pytest.mark.parametrize(
    ("number", "problem"),
    [("NaN", "NaN is not a JSON number"), ("1e999", "number 1e999 out of range")],
)
def test_numbers_json_has_not_are_refused(tmp_path, demo_report, number, problem):
    text = json.dumps(demo_report).replace('"duration": null', f'"duration": {number}')
    path = write(tmp_path, "n.json", text)
    proc = run_cli("merge", str(path))
    assert (proc.returncode, proc.stderr) == (
        2,
        f"snapaudit: {path}: not a snapaudit report ({problem})\n",
    )


def test_a_file_over_the_size_bound_is_refused(tmp_path):
    path = write(tmp_path, "big.json", "[" + "0," * 600_000 + "0]")
    with pytest.raises(ReportError) as caught:
        read_json(path, ReportError, "snapaudit report", max_bytes=2**20)
    assert str(caught.value) == f"{path}: cannot read: larger than 1 MiB"


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({"schema": "snapaudit/baseline/v1", "findings": {}}, "findings: expected an array"),
        ({"schema": "snapaudit/baseline/v1", "findings": [{"fingerprint": 5}]}, "findings[0]"),
        ({"schema": "snapaudit/baseline/v1", "findings": ["x"]}, "findings[0]"),
    ],
)
def test_a_malformed_baseline_is_one_line(tmp_path, document, problem):
    path = write(tmp_path, "baseline.json", document)
    proc = run_cli("scan", "--demo", "--baseline", str(path))
    suffix = "" if problem.endswith("array") else ".fingerprint"
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        2,
        "",
        f"snapaudit: {path}: malformed baseline: {problem}{suffix}\n",
    )


@pytest.mark.parametrize("depth", [40, 100_000])
def test_a_deeply_nested_configuration_is_one_line(tmp_path, depth):
    # 40 deep parses, and is refused after; 100,000 deep would exhaust tomllib's stack.
    path = tmp_path / "snapaudit.toml"
    path.write_text("select = " + "[" * depth + "]" * depth + "\n")
    for command in (["scan", "--demo", "--config", str(path)], ["config", "--config", str(path)]):
        proc = run_cli(*command)
        assert (proc.returncode, proc.stdout, proc.stderr) == (
            2,
            "",
            f"snapaudit: {path}: nested more than {MAX_DEPTH} deep\n",
        )


def test_a_huge_configuration_is_one_line(tmp_path):
    path = tmp_path / "snapaudit.toml"
    path.write_text("# padding\n" * 500_000)
    proc = run_cli("config", "--config", str(path))
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        2,
        "",
        f"snapaudit: {path}: cannot read: larger than 4 MiB\n",
    )


def test_host_level_findings_with_empty_names_render_in_every_format(tmp_path, demo_report):
    # The schema allows empty domain, snapshot and even host names; SARIF's logical location
    # once took the last non-empty one and had none.
    demo_report["hosts"][0]["uri"] = ""
    for record in demo_report["findings"] + demo_report["snapshots"]:
        record.update(host="", domain="", **({"snapshot": ""} if "rule" in record else {}))
    for record in demo_report["findings"]:
        record["disk"] = None
    path = write(tmp_path, "empty.json", demo_report)
    for name in FORMATS:
        proc = run_cli("merge", "-f", name, str(path))
        assert (proc.returncode, proc.stderr) == (0, ""), name
    proc = run_cli("merge", "-f", "sarif", str(path))
    location = json.loads(proc.stdout)["runs"][0]["results"][0]["locations"][0]
    assert location["logicalLocations"] == [{"name": "", "fullyQualifiedName": ""}]
    assert location["physicalLocation"]["artifactLocation"] == {
        "uri": "etc/libvirt/",
        "uriBaseId": "HOST1",
    }


def test_every_schema_keyword_is_checked():
    # The checker stops on a keyword it does not know, but only where a report reaches it.
    def nodes(node):
        yield node
        for key in ("properties", "$defs"):
            for sub in node.get(key, {}).values():
                yield from nodes(sub)
        for sub in [node["items"]] if "items" in node else []:
            yield from nodes(sub)
        for key in ("oneOf", "allOf"):
            for sub in node.get(key, []):
                yield from nodes(sub)

    schema = report_schema()
    assert {key for node in nodes(schema) for key in node} <= KEYWORDS
    jsonschema.Draft202012Validator.check_schema(schema)


def test_a_sample_report_loads_and_renders_again(tmp_path):
    original = render("json", sample_result())
    path = write(tmp_path, "r.json", original)
    assert render("json", load_report(path)) == original


def test_a_field_path_from_the_file_stays_one_printable_line():
    from auditor.reports.validate import Invalid, check_report

    with pytest.raises(Invalid) as caught:
        check_report({"tab\tnew\nline": ["\udcff"]})
    assert str(caught.value) == "tab\\x09new\\x0aline[0]: not Unicode text (a lone surrogate)"
