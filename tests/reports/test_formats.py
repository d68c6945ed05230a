"""Report formats: the JSON contract and its schema, HTML escaping, terminal safety."""

from __future__ import annotations

import dataclasses
import importlib
import json
import re
from datetime import UTC, datetime
from importlib.resources import files

import jsonschema
import pytest

from auditor.engine.audit import audit, with_rule_docs
from auditor.engine.registry import load_rules
from auditor.model import Domain, Host, HostScan, Skipped, Snapshot
from auditor.reports import FORMATS, render, render_pieces
from auditor.sources.live.scanner import scan_host
from tests.helpers import FIXTURES, fixture_uri, run_cli
from tests.sample_results import sample_result

SCHEMA = json.loads((files("auditor.reports") / "schemas" / "report-v1.json").read_text())
EPOCH = {"SOURCE_DATE_EPOCH": "1764000000"}


def validate(report: dict) -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    jsonschema.Draft202012Validator(SCHEMA).validate(report)


@pytest.mark.parametrize(
    "uris",
    [
        [fixture_uri("seed_examples.xml")],
        [fixture_uri(f"rules/SNAP00{i}.xml") for i in range(1, 9)],
        ["test:///nonexistent/node.xml", fixture_uri("clean_host.xml")],
    ],
)
def test_json_reports_validate_against_the_shipped_schema(uris):
    args = [a for uri in uris for a in ("-c", uri)]
    proc = run_cli("scan", *args, "--format", "json", "--fail-on", "never")
    validate(json.loads(proc.stdout))


def test_schema_rejects_a_report_that_breaks_the_contract():
    proc = run_cli("scan", "-c", fixture_uri("seed_examples.xml"), "-f", "json")
    report = json.loads(proc.stdout)
    del report["findings"][0]["disk"]
    with pytest.raises(jsonschema.ValidationError):
        validate(report)


def test_demo_json_report_is_exact(golden):
    proc = run_cli("scan", "--demo", "--format", "json", env=EPOCH)
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    validate(report)
    # Named "demo", not by where the package is installed nor the machine running it: the
    # fingerprints are the same everywhere too.
    assert "test://" not in proc.stdout and "demo-host.xml" not in proc.stdout
    assert {f["host"] for f in report["findings"]} == {"demo"}
    report["tool"]["version"] = "VERSION"
    report["hosts"][0]["libvirt_version"] = "LIBVIRT_VERSION"  # the test driver's
    golden(FIXTURES / "demo-report.expected.json", report)


def test_html_escapes_everything_from_the_host():
    proc = run_cli("scan", "--demo", "--format", "html", env=EPOCH)
    html = proc.stdout
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<img" not in html
    assert (
        "Snapshot names may hold any characters &amp; &#34;quotes&#34; &lt;b&gt;bold&lt;/b&gt;"
        in html
    )
    # Self-contained: nothing to fetch, nothing to run.
    assert not re.search(r"<(script|link|iframe|object|embed)\b", html)
    assert not re.search(r"<[^>]*\b(src|href)\s*=", html)
    assert "@import" not in html and "url(" not in html


def test_html_summary_counts():
    html = run_cli("scan", "--demo", "--format", "html", env=EPOCH).stdout
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
    assert "Hosts 1 Domains 7 Snapshots 9 Compliant 44% 4 of 9" in text
    assert "Error findings 9 Warning findings 8 Info findings 0" in text


def hostile_result():
    """A snapshot whose name and description try to drive a terminal."""
    snap = Snapshot(
        host="test:///h",
        domain="vm\x1b[2J",
        domain_uuid="u",
        name="s\x1b]0;pwned\x07",
        state="running",
        created=datetime(2025, 1, 1, tzinfo=UTC),
        parent=None,
        current=True,
        description=None,
        memory="internal",
        memory_file=None,
        disks=(),
    )
    skipped = Skipped(
        "test:///h", "vm", "gone\r", "snapshot disappeared during the scan", vanished=True
    )
    domain = Domain("test:///h", "vm\x1b[2J", "u", (), (snap,))
    scans = [HostScan(Host("test:///h"), (domain,), (skipped,))]
    rules, _ = load_rules()
    return audit(scans, rules, now=datetime(2025, 1, 2, tzinfo=UTC))


def test_text_escapes_control_characters_and_colours_only_when_asked():
    result = hostile_result()
    plain = render("text", result)
    assert "\x1b" not in plain and "\x07" not in plain and "\r" not in plain
    assert plain.splitlines()[0] == (
        "test:///h  vm\\x1b[2J/s\\x1b]0;pwned\\x07  SNAP001 error    memory state is stored"
        " inside the disk image (internal snapshot)"
    )
    assert plain.splitlines()[1] == (
        "test:///h  vm/gone\\x0d  skipped: snapshot disappeared during the scan"
    )
    coloured = render("text", result, color=True)
    assert "\x1b[31merror  \x1b[0m" in coloured


@pytest.fixture
def golden_text(request):
    """Compare text with a golden file; `pytest --update-golden` rewrites it instead."""

    def check(path, actual: str) -> None:
        if request.config.getoption("--update-golden"):
            path.parent.mkdir(exist_ok=True)
            path.write_text(actual, encoding="utf-8")
            return
        assert path.exists(), f"{path} is missing: run pytest --update-golden and review it"
        assert actual == path.read_text(encoding="utf-8")

    return check


def test_the_formats_are_known():
    assert set(FORMATS) == {"text", "json", "html", "sarif", "junit", "prometheus"}


@pytest.mark.parametrize("name", FORMATS)
def test_every_format_renders_the_sample_result_exactly(name, golden_text):
    """Waived, baselined and hostile findings, findings about an image, a domain and the
    host, a rule not installed here; with the installed rules' documentation for SARIF."""
    result = with_rule_docs(sample_result(), load_rules()[0])
    golden_text(FIXTURES / "reports" / f"sample.{name}", render(name, result))


@pytest.mark.parametrize("name", ["text", "json", "prometheus"])
@pytest.mark.parametrize("batch", [1, 2, 3, 5])
def test_a_report_made_in_pieces_is_the_same_wherever_they_break(name, batch, monkeypatch):
    """Pieces of BATCH lines or records: the last piece ending exactly on a batch
    included, the pieces make the report, byte for byte, and none is empty."""
    result = with_rule_docs(sample_result(), load_rules()[0])
    module = importlib.import_module(FORMATS[name])
    whole = render(name, result)
    monkeypatch.setattr(module, "_BATCH", batch)
    pieces = list(render_pieces(name, result))
    assert ("".join(pieces), len(pieces) > 2, all(pieces)) == (whole, True, True)


def test_fingerprints_ignore_what_changes_between_scans():
    from auditor.policy.fingerprint import fingerprint

    result = audit([scan_host(fixture_uri("rules/SNAP005.xml"))], load_rules()[0])
    (finding,) = [f for f in result.findings if f.rule == "SNAP005"]
    same = fingerprint(finding, "hv1")
    moved = dataclasses.replace(
        finding, host="qemu+ssh://hv1/system", message="reworded", domain="renamed"
    )
    assert fingerprint(moved, "hv1") == same  # host URI, wording, domain name: not identity
    assert fingerprint(finding, "hv2") != same
    assert fingerprint(dataclasses.replace(finding, disk="vdb"), "hv1") != same
    assert fingerprint(dataclasses.replace(finding, rule="SNAP003"), "hv1") != same


def test_html_shows_findings_about_the_host_itself():
    old = Host(
        "qemu+ssh://root@hv-old/system",
        hostname="hv-old",
        driver="QEMU",
        external_snapshot_revert=False,
    )
    result = audit([HostScan(old)], load_rules()[0])
    assert [f.rule for f in result.findings] == ["HOST001"]
    html = render("html", result)
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
    assert (
        "HOST001 warning libvirt on this host cannot revert to or delete external snapshots" in text
    )
    assert "No snapshots or findings on this host." not in text


def test_a_report_finding_has_the_keys_and_values_of_a_record_of_any_keys():
    # The report's records are spelled out for speed; they must stay the generic records.
    from auditor.reports.records import REPORT_KEYS, finding_record

    findings = sample_result().findings
    assert any(f.waiver is not None for f in findings)
    for f in findings:
        spelled_out = finding_record(f, "fp")
        generic = finding_record(f, "fp", list(REPORT_KEYS))  # not REPORT_KEYS: the generic path
        assert list(spelled_out.items()) == list(generic.items())
        assert list(spelled_out) == list(REPORT_KEYS)


def test_html_names_an_image_once_in_the_findings_about_files():
    html = render("html", with_rule_docs(sample_result(), load_rules()[0]))
    table = html[html.index("<th>Image</th>") :]
    row = table[: table.index("</tr>", table.index("SNAP011"))]
    row = row[row.rindex("<tr>") :]
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
    assert cells[1:4] == ["/images/web.qcow2", "old", "vda"]
    assert row.count("/images/web.qcow2") == 2  # the cell, and the finding's own message


def test_html_sets_code_spans_in_remediation_and_still_escapes_it():
    hostile = "</td><script>alert(1)</script>"
    sample = with_rule_docs(sample_result(), load_rules()[0])
    findings = tuple(
        dataclasses.replace(
            f,
            host=f"{f.host}{hostile}",
            remediation=f"Run `virsh <b onclick=x> {hostile}` & then `ls`, or ` not closed",
        )
        for f in sample.findings
    )
    html = render("html", dataclasses.replace(sample, findings=findings))
    assert (
        "Run <code>virsh &lt;b onclick=x&gt; &lt;/td&gt;&lt;script&gt;alert(1)&lt;/script&gt;"
        "</code> &amp; then <code>ls</code>, or ` not closed"
    ) in html
    assert not re.search(r"<(script|b onclick)\b", html)
    assert not re.search(r"<(?!/?code\b)[^>]*`", html)  # no backtick inside a tag
