"""Reports read back (loader), compared (`snapaudit diff`) and combined (`snapaudit merge`)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from auditor.engine.audit import with_rule_docs
from auditor.engine.registry import load_rules
from auditor.model import (
    BaselineOutcome,
    DiskSource,
    Domain,
    FileFacts,
    Finding,
    Host,
    HostScan,
    Policy,
    RuleError,
    RulePolicy,
    ScanResult,
    Severity,
    Skipped,
    SnapshotDisk,
    WaiverUse,
)
from auditor.policy.fingerprint import fingerprint
from auditor.reports import FORMATS, render
from auditor.reports.loader import load_report
from tests.helpers import fixture_uri, run_cli
from tests.sample_results import UUID, WAIVER, sample_result, snapshot

T0 = datetime(2025, 11, 23, 2, 30, tzinfo=UTC)
T1 = datetime(2025, 11, 24, 2, 30, tzinfo=UTC)


def write(tmp_path: Path, name: str, result: ScanResult) -> Path:
    path = tmp_path / name
    path.write_text(render("json", result))
    return path


# --- loader -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "uris",
    [
        [fixture_uri("seed_examples.xml"), "test:///nonexistent/node.xml"],
        [fixture_uri(f"rules/SNAP0{i:02d}.xml") for i in (1, 2, 3, 4, 5, 6, 7, 8, 13, 14, 15, 16)],
    ],
)
def test_a_loaded_report_renders_as_the_scan_did(tmp_path, uris):
    args = [a for uri in uris for a in ("-c", uri)]
    original = run_cli("scan", *args, "-f", "json", "--fail-on", "never").stdout
    (tmp_path / "r.json").write_text(original)
    assert render("json", load_report(tmp_path / "r.json")) == original


def test_every_reporter_renders_a_loaded_report_as_it_rendered_the_result(tmp_path):
    result = sample_result()
    loaded = load_report(write(tmp_path, "r.json", result))
    # hosts[].domains keeps a domain without snapshots or findings (db).
    assert [d.name for d in result.hosts[0].domains] == ["web", "db"]
    assert [d.name for d in loaded.hosts[0].domains] == ["web", "db"]
    assert loaded.findings == result.findings  # IMAGE@TAG is read back as image and tag
    for name in FORMATS:
        assert render(name, loaded) == render(name, result), name


def test_hosts_domain_lists_are_used_when_a_report_has_them(tmp_path):
    document = json.loads(render("json", sample_result()))
    document["hosts"][0]["domains"] = [
        {"name": "web", "uuid": UUID},
        {"name": "db", "uuid": "3f0c2a7e-1b5d-4c8e-9a61-2d7f4e8b0202"},
    ]
    (tmp_path / "r.json").write_text(json.dumps(document))
    loaded = load_report(tmp_path / "r.json")
    assert [(d.name, d.uuid, len(d.snapshots)) for d in loaded.hosts[0].domains] == [
        ("web", UUID, 3),
        ("db", "3f0c2a7e-1b5d-4c8e-9a61-2d7f4e8b0202", 0),
    ]
    assert render("prometheus", loaded) == render("prometheus", sample_result())


def test_sizes_and_chain_depths_survive_a_round_trip(tmp_path):
    def disk(name, mode, path):
        source = DiskSource("file", path, "qcow2")
        external = mode == "external"
        return SnapshotDisk(
            name, mode, source if external else None, None if external else source, "disk", False
        )

    snap = replace(
        snapshot("s1", T0),
        memory="external",
        memory_file="/img/a.mem",
        disks=(
            disk("vda", "external", "/img/a.s1"),
            disk("vdb", "internal", "/img/b.qcow2"),
            disk("vdc", "external", "/img/c.s1"),
            disk("vdd", "external", "/img/d.s1"),
        ),
    )
    files = {
        "/img/a.s1": FileFacts("/img/a.s1", True, 1000, "qcow2", ("/img/a.qcow2",)),
        "/img/b.qcow2": FileFacts("/img/b.qcow2", True, 7000, "qcow2"),
        "/img/c.s1": FileFacts("/img/c.s1", False),
        "/img/d.s1": FileFacts("/img/d.s1", True, 10, "qcow2", error="backing file gone"),
        "/img/a.mem": FileFacts("/img/a.mem", True, 2048),
    }
    scan = HostScan(
        Host("qemu:///system", "hv1"),
        (Domain("qemu:///system", "web", UUID, (), (replace(snap, host="qemu:///system"),)),),
        files=files,
    )
    original = render("json", ScanResult(T0, (scan,), ()))
    assert json.loads(original)["snapshots"][0]["disks"][0]["chain_depth"] == 2
    (tmp_path / "r.json").write_text(original)
    loaded = load_report(tmp_path / "r.json")
    assert render("json", loaded) == original
    # The report gives depths, not the chains' images: none is made up.
    facts = loaded.hosts[0].files
    assert {p: (f.backing_chain, f.chain_depth) for p, f in facts.items()} == {
        "/img/a.s1": ((), 2),
        "/img/b.qcow2": ((), 1),
        "/img/d.s1": ((), None),  # its chain could not be read
        "/img/a.mem": ((), None),  # not an image
    }


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read: No such file or directory"),
        ("<html/>", "not a snapaudit report (not JSON: Expecting value at line 1)"),
        ("[1, 2]", 'not a snapaudit report (no "schema": "snapaudit/report/v1")'),
        (
            '{"schema": "snapaudit/baseline/v1", "findings": []}',
            "unsupported report schema 'snapaudit/baseline/v1' (this snapaudit reads"
            " snapaudit/report/v1)",
        ),
        (
            '{"schema": "snapaudit/report/v1"}',
            "malformed snapaudit report: missing 'generated_at', 'tool', 'hosts', 'summary',"
            " 'snapshots', 'findings'",
        ),
    ],
)
def test_what_is_not_a_report_is_one_line_and_exit_2(tmp_path, content, message):
    path = tmp_path / "in.json"
    if content is not None:
        path.write_text(content)
    for command in (["merge", str(path)], ["diff", str(path), str(path)]):
        proc = run_cli(*command)
        assert (proc.returncode, proc.stdout, proc.stderr) == (
            2,
            "",
            f"snapaudit: {path}: {message}\n",
        )


def test_a_report_with_a_bad_value_is_malformed(tmp_path):
    document = json.loads(render("json", sample_result()))
    document["findings"][0]["severity"] = "fatal"
    path = tmp_path / "in.json"
    path.write_text(json.dumps(document))
    proc = run_cli("merge", str(path))
    assert (proc.returncode, proc.stderr) == (
        2,
        f"snapaudit: {path}: malformed snapaudit report: findings[0].severity: 'fatal' is not"
        " one of error, warning, info\n",
    )


# --- diff -------------------------------------------------------------------------------------


def found(host, rule, severity, domain, subject, disk=None, **extra) -> Finding:
    return Finding(
        rule=rule,
        name=rule.lower(),
        severity=severity,
        host=host,
        domain=domain,
        snapshot=subject,
        disk=disk,
        message=f"{rule} on {subject}",
        remediation="",
        domain_uuid=UUID,
        **extra,
    )


def scanned(uri, hostname, snapshots=(), error=None, skipped=()) -> HostScan:
    snaps = tuple(replace(snapshot(name, T0), host=uri) for name in snapshots)
    domains = (Domain(uri, "web", UUID, (), snaps),) if snaps else ()
    return HostScan(Host(uri, hostname, error=error), domains, tuple(skipped))


OLD_HV1, NEW_HV1, HV2 = "qemu+ssh://hv1/system", "qemu:///system", "qemu+ssh://hv2/system"
E, W = Severity.ERROR, Severity.WARNING
OLD = ScanResult(
    T0,
    (scanned(OLD_HV1, "hv1", ["s1", "s2", "gone"]), scanned(HV2, "hv2", ["n1"])),
    (
        found(OLD_HV1, "SNAP001", E, "web", "s1"),
        found(OLD_HV1, "SNAP002", E, "web", "s1", "vda"),
        found(OLD_HV1, "SNAP006", W, "web", "s2", "vdb"),
        found(HV2, "SNAP001", E, "web", "n1"),
        found(OLD_HV1, "SNAP002", E, "web", "gone", "vda"),
    ),
)


def new_report(*findings: Finding, complete: bool = False) -> ScanResult:
    """The night after: hv1 audited under another URI. Unless complete, one of its snapshots
    could not be read and hv2 could not be reached; if complete, hv2 is no longer audited."""
    if complete:
        return ScanResult(T1, (scanned(NEW_HV1, "hv1", ["s1", "s2", "s3"]),), findings)
    skipped = [Skipped(NEW_HV1, "web", "gone", "cannot read the snapshot XML")]
    hosts = (
        scanned(NEW_HV1, "hv1", ["s1", "s2", "s3"], skipped=skipped),
        scanned(HV2, None, error="unreachable"),
    )
    return ScanResult(T1, hosts, findings)


UNCHANGED = (
    found(NEW_HV1, "SNAP002", E, "web", "s1", "vda"),
    found(NEW_HV1, "SNAP006", W, "web", "s2", "vdb", waiver=WAIVER),
)
NEW_ERROR = found(NEW_HV1, "SNAP005", E, "web", "s3", "vda")
NEW_WARNING = found(NEW_HV1, "SNAP007", W, "web", "s1", "vdc")


def test_diff_text(tmp_path):
    old = write(tmp_path, "old.json", OLD)
    new = write(tmp_path, "new.json", new_report(*UNCHANGED, NEW_ERROR, NEW_WARNING))
    proc = run_cli("diff", str(old), str(new))
    # hv2 could not be scanned and web/gone could not be read: their findings are unverified,
    # not fixed. The incomplete new report wins over the new error: exit 3.
    assert (proc.returncode, proc.stderr) == (3, "")
    assert proc.stdout == (
        "new         qemu:///system  web/s3 [vda]  SNAP005 error  SNAP005 on s3\n"
        "new         qemu:///system  web/s1 [vdc]  SNAP007 warning  SNAP007 on s1\n"
        "fixed       qemu+ssh://hv1/system  web/s1  SNAP001 error  SNAP001 on s1\n"
        "unverified  qemu+ssh://hv2/system  web/n1  SNAP001 error  SNAP001 on n1\n"
        "unverified  qemu+ssh://hv1/system  web/gone [vda]  SNAP002 error  SNAP002 on gone\n"
        "2 new, 1 fixed, 2 unchanged, 2 unverified (not audited in the new report)\n"
    )


def test_diff_json(tmp_path):
    old = write(tmp_path, "old.json", OLD)
    new_result = new_report(*UNCHANGED, NEW_ERROR, NEW_WARNING)
    new = write(tmp_path, "new.json", new_result)
    proc = run_cli("diff", str(old), str(new), "--format", "json")
    document = json.loads(proc.stdout)

    def record(f: Finding, hostname: str, suppressed: bool = False) -> dict:
        return {
            "fingerprint": fingerprint(f, hostname),
            "rule": f.rule,
            "name": f.name,
            "severity": f.severity.value,
            "host": f.host,
            "domain": "web",
            "snapshot": f.snapshot,
            "disk": f.disk,
            "message": f.message,
            "suppressed": suppressed,
        }

    assert document == {
        "schema": "snapaudit/diff/v1",
        "old_generated_at": "2025-11-23T02:30:00Z",
        "new_generated_at": "2025-11-24T02:30:00Z",
        "summary": {"new": 2, "fixed": 1, "unchanged": 2, "unverified": 2},
        "new": [record(NEW_ERROR, "hv1"), record(NEW_WARNING, "hv1")],
        "fixed": [record(OLD.findings[0], "hv1")],
        "unchanged": [record(UNCHANGED[0], "hv1"), record(UNCHANGED[1], "hv1", True)],
        "unverified": [record(OLD.findings[3], "hv2"), record(OLD.findings[4], "hv1")],
    }
    # Matched across URIs by the host's name: the fingerprints are the JSON reports' own.
    reported = json.loads(new.read_text())["findings"]
    assert [r["fingerprint"] for r in document["unchanged"]] == [
        r["fingerprint"] for r in reported[:2]
    ]


@pytest.mark.parametrize(
    ("findings", "args", "code"),
    [
        ((*UNCHANGED, NEW_ERROR), [], 1),
        ((*UNCHANGED, NEW_ERROR), ["--fail-on", "never"], 0),
        ((*UNCHANGED, replace(NEW_ERROR, waiver=WAIVER)), [], 0),  # waived: not a new failure
        ((*UNCHANGED, replace(NEW_ERROR, baselined=True)), [], 0),
        ((*UNCHANGED, NEW_WARNING), [], 0),
        ((*UNCHANGED, NEW_WARNING), ["--fail-on", "warning"], 1),
        (UNCHANGED, ["--fail-on", "info"], 0),  # only unchanged findings left
    ],
)
def test_diff_exit_codes(tmp_path, findings, args, code):
    old = write(tmp_path, "old.json", OLD)
    new = write(tmp_path, "new.json", new_report(*findings, complete=True))
    assert run_cli("diff", str(old), str(new), *args).returncode == code


# --- merge ------------------------------------------------------------------------------------

SYSTEM = "qemu:///system"
STALE = replace(WAIVER, rule="SNAP011", reason="old images", origin="snapaudit.toml:30")


def hypervisor(hostname: str | None, findings=(), error=None, **extra) -> ScanResult:
    return ScanResult(
        T0 if hostname != "hv2" else T1,
        (scanned(SYSTEM, hostname, ["s1"] if not error else (), error=error),),
        tuple(replace(f, host=SYSTEM) for f in findings),
        **extra,
    )


def test_merge_tells_hosts_with_the_same_uri_apart(tmp_path):
    policy = Policy(
        (RulePolicy("SNAP001", "internal-memory", E, {}),), ("/etc/snapaudit/config.toml",)
    )
    load_error = RuleError("acme", "failed to load acme: ImportError: no acme")
    hv1 = hypervisor(
        "hv1",
        [found(SYSTEM, "SNAP001", E, "web", "s1")],
        rule_errors=(load_error,),
        waivers=(WaiverUse(WAIVER, "active", 1), WaiverUse(STALE, "stale", 0)),
        baseline=BaselineOutcome("baseline.json", 1, 0, 0),
        policy=policy,
        duration=3.5,
    )
    hv2 = hypervisor(
        "hv2",
        [found(SYSTEM, "SNAP002", E, "web", "s1", "vda"), found(SYSTEM, "SNAP006", W, "web", "s1")],
        rule_errors=(load_error,),
        waivers=(WaiverUse(WAIVER, "stale", 0), WaiverUse(STALE, "stale", 0)),
        baseline=BaselineOutcome("baseline.json", 0, 2, 1),
        policy=policy,
        duration=7.25,
    )
    hv3 = hypervisor(None, error="Failed to connect socket")  # libvirtd down: no host name
    paths = [write(tmp_path, f"{h}.json", r) for h, r in (("hv1", hv1), ("hv2", hv2), ("hv3", hv3))]
    proc = run_cli("merge", *map(str, paths), "-o", str(tmp_path / "fleet.json"))
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    fleet = json.loads((tmp_path / "fleet.json").read_text())

    assert [(h["uri"], h["hostname"], h["error"]) for h in fleet["hosts"]] == [
        ("qemu:///system#hv1", "hv1", None),
        ("qemu:///system#hv2", "hv2", None),
        ("qemu:///system#hv3", None, "Failed to connect socket"),
    ]
    assert fleet["generated_at"] == "2025-11-24T02:30:00Z"  # the newest scan
    assert fleet["summary"] == {
        "hosts": 3,
        "domains": 2,
        "snapshots": 2,
        "compliant": 0,
        "noncompliant": 2,
        "findings": {"error": 2, "warning": 1, "info": 0},
    }
    assert [(f["host"], f["rule"]) for f in fleet["findings"]] == [
        ("qemu:///system#hv1", "SNAP001"),
        ("qemu:///system#hv2", "SNAP002"),
        ("qemu:///system#hv2", "SNAP006"),
    ]
    assert [s["host"] for s in fleet["snapshots"]] == ["qemu:///system#hv1", "qemu:///system#hv2"]
    # Fingerprints rest on host names, so they are the hypervisors' own.
    inputs = [f for path in paths for f in json.loads(path.read_text())["findings"]]
    assert [f["fingerprint"] for f in fleet["findings"]] == [f["fingerprint"] for f in inputs]
    assert [(w["rule"], w["status"], w["matched"]) for w in fleet["waivers"]] == [
        ("SNAP001", "active", 1),
        ("SNAP011", "stale", 0),
    ]
    assert fleet["baseline"] == {"path": "baseline.json", "known": 1, "new": 2, "fixed": 1}
    assert fleet["policy"] == {
        "rules": [
            {"code": "SNAP001", "name": "internal-memory", "severity": "error", "params": {}}
        ],
        "sources": ["/etc/snapaudit/config.toml"],
    }
    assert fleet["duration"] == 7.25  # hypervisors scan in parallel
    assert fleet["rule_errors"] == [
        {
            "rule": "acme",
            "message": "failed to load acme: ImportError: no acme",
            "host": None,
            "domain": None,
            "snapshot": None,
        }
    ]


def test_merge_makes_one_html_page(tmp_path):
    paths = [write(tmp_path, f"{h}.json", hypervisor(h)) for h in ("hv1", "hv2")]
    page = tmp_path / "fleet.html"
    proc = run_cli("merge", *map(str, paths), "--format", "html", "-o", str(page))
    assert proc.returncode == 0, proc.stderr
    html = page.read_text()
    assert html.count("qemu:///system#hv1") >= 1 and html.count("qemu:///system#hv2") >= 1
    assert run_cli("merge", *map(str, paths), "-f", "text").stdout == (
        "2 hosts, 2 domains, 2 snapshots: 2 compliant, 0 noncompliant; findings: 0 error,"
        " 0 warning, 0 info\n"
    )


def test_merge_refuses_the_same_host_twice(tmp_path):
    path = write(tmp_path, "hv1.json", hypervisor("hv1"))
    proc = run_cli("merge", str(path), str(path))
    assert (proc.returncode, proc.stderr) == (
        2,
        f"snapaudit: host qemu:///system#hv1 is in both {path} and {path}\n",
    )


def test_merge_refuses_an_unknown_format(tmp_path):
    path = write(tmp_path, "hv1.json", hypervisor("hv1"))
    proc = run_cli("merge", str(path), "-f", "xml")
    assert (proc.returncode, proc.stderr) == (
        2,
        "snapaudit: --format 'xml': not one of text, json, html, sarif, junit, prometheus\n",
    )


def test_merge_of_one_report_renders_it_again(tmp_path):
    result = sample_result()
    path = write(tmp_path, "r.json", result)
    # The report holds no rule documentation: merge describes the rules as installed here.
    expected = render("sarif", with_rule_docs(result, load_rules()[0]))
    assert run_cli("merge", str(path), "-f", "sarif").stdout == expected
