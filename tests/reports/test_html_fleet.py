"""The HTML report as a fleet manager reads it: hosts and rules first, one section per host
(collapsed for a fleet, open for one host) with noncompliant snapshots first, every row in
print, small enough to mail."""

from __future__ import annotations

import re

from auditor.engine.audit import audit, with_rule_docs
from auditor.engine.registry import load_rules
from auditor.reports import render
from auditor.reports.html import code_spans
from auditor.sources.live.fleet import scan_hosts
from bench.nodes import write_nodes
from tests.helpers import run_cli
from tests.sample_results import sample_result

EPOCH = {"SOURCE_DATE_EPOCH": "1764000000"}


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_demo_page_opens_with_hosts_and_rules_then_its_host_expanded():
    html = run_cli("scan", "--demo", "--format", "html", env=EPOCH).stdout
    positions = [
        html.index(s)
        for s in ("<h2>Hosts</h2>", "<h2>Findings by rule</h2>", '<details class="host" open>')
    ]
    assert positions == sorted(positions)
    text = text_of(html)
    assert "demo 7 9 44% (4) 9 8 complete" in text
    assert re.search(r"SNAP002 error internal-disk 4 1 3 \W*snapaudit fix -c URI --domain VM", text)
    assert "SNAP013 warning snapshot-age 3 1 3 Delete snapshots" in text
    # A single host's section is open: a screenshot or a mailed page shows its snapshots.
    assert html.count('<details class="host" open>') == 1
    assert "opens on a click" not in html
    assert "<script" not in html


def test_remediation_is_shown_once_per_rule_and_findings_show_their_message():
    html = run_cli("scan", "--demo", "--format", "html", env=EPOCH).stdout
    assert "Fix:" not in html
    found = set(re.findall(r"<b class=\"\w+\">(\w+) (?:error|warning|info)</b>", html))
    assert len(found) == 10
    for rule in load_rules()[0]:
        assert html.count(code_spans(rule.remediation)) == (rule.code in found), rule.code
    assert "SNAP001 error</b> memory state is stored inside the disk image" in html
    # Code spans are set as code, not shown as Markdown.
    assert "<code>snapaudit fix -c URI --domain VM</code> (VM shut off)" in html
    assert not re.search(r"<td class=\"fix\">[^<]*`", html)


def test_noncompliant_snapshots_come_first_in_each_host():
    html = run_cli("scan", "--demo", "--format", "html", env=EPOCH).stdout
    section = html[html.index('<details class="host" open>') :]
    verdicts = re.findall(r"<td>(compliant|noncompliant)</td>", section)
    assert verdicts == ["noncompliant"] * 5 + ["compliant"] * 4
    rows = re.findall(r"<tr( class=\"nc\")?><td>", section)
    assert rows == [' class="nc"'] * 5 + [""] * 4


def test_a_fleet_of_20_hosts_x_500_snapshots_is_at_most_3_mb(tmp_path):
    nodes = write_nodes(tmp_path, hosts=20, domains=50, snapshots=10)
    scans = dict(scan_hosts([f"test://{p}" for p in nodes]))
    result = audit([scans[i] for i in sorted(scans)], load_rules()[0])
    # Each domain mixes both kinds of snapshot: one SNAP017 each.
    assert len(result.snapshots) == 10_000 and len(result.findings) == 7_000
    html = render("html", result)
    assert len(html.encode()) <= 3_000_000
    # A fleet's sections are closed on screen; print opens every one of them.
    assert html.count('<details class="host">') == 20 and not re.search(
        r"<details[^>]*\bopen", html
    )
    assert "details::details-content { content-visibility: visible; display: contents; }" in html
    assert html.count('<tr class="nc"><td>') == 5_000
    assert len(re.findall(r"<td>(?:non)?compliant</td>", html)) == 10_000
    (internal_disk,) = [r for r in load_rules()[0] if r.code == "SNAP002"]
    assert html.count(code_spans(internal_disk.remediation)) == 1


def test_merge_gives_the_same_page(tmp_path):
    report, page = tmp_path / "demo.json", tmp_path / "demo.html"
    run_cli("scan", "--demo", "-f", f"json:{report}", "-f", f"html:{page}", env=EPOCH)
    merged = run_cli("merge", str(report), "--format", "html", env=EPOCH)
    assert merged.returncode == 0, merged.stderr
    assert merged.stdout == page.read_text()


def test_counts_read_as_english():
    sample = render("html", with_rule_docs(sample_result(), load_rules()[0]))
    text = text_of(sample)
    assert "3 snapshots, 2 noncompliant, 3 errors, 3 warnings" in text
    assert "2 domains, 3 snapshots" in text
    assert "counting 1 waived finding and 1 baselined finding as accepted" in text
    assert "1 finding already known, 5 new" in text
    demo = text_of(run_cli("scan", "--demo", "--format", "html", env=EPOCH).stdout)
    assert "7 domains, 9 snapshots" in demo and "18 rules ran" in demo
    for page in (text, demo):
        assert not re.search(r"\b1 (warning|error|finding|snapshot|host|domain|rule)s\b", page)
