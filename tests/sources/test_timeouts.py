"""Hosts that hang or break: a silent host times out, a host whose scan raises is that host's
error, and the other hosts are reported either way. Also: what could not be audited is said
on stderr when the report goes elsewhere."""

from __future__ import annotations

import json
import socket
import threading
import time
from datetime import UTC, date, datetime
from pathlib import Path

import libvirt
import pytest

from auditor.cli.problems import problem_lines
from auditor.model import Host, HostScan, RuleError, ScanResult, Skipped, Waiver, WaiverUse
from auditor.sources.live.deadline import Raised, TimedOut, run_all, run_each
from auditor.sources.live.fleet import scan_hosts
from tests.helpers import FIXTURES, fixture_uri, run_cli

SEED = fixture_uri("seed_examples.xml")
CLEAN = fixture_uri("clean_host.xml")


@pytest.fixture
def silent_host():
    """A TCP endpoint that accepts connections (the kernel completes the handshake for the
    listen backlog) and never reads or answers: a hung hypervisor."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield f"qemu+tcp://127.0.0.1:{server.getsockname()[1]}/system", server
    server.close()


@pytest.fixture
def bad_utf8_host(tmp_path):
    """A test-driver node file with a byte that is not UTF-8 in a domain name: libvirt's
    error message quotes it, and libvirt-python raises SystemError instead of libvirtError."""
    text = (FIXTURES / "clean_host.xml").read_bytes()
    path = tmp_path / "bad.xml"
    path.write_bytes(text.replace(b"<name>clean01</name>", b"<name>clean\xff01</name>", 1))
    return f"test://{path}", path


def scan_json(*args: str) -> tuple[int, dict, str]:
    proc = run_cli("scan", *args, "-f", "json")
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def test_a_silent_host_times_out_and_the_other_hosts_are_reported(silent_host, tmp_path):
    uri, _ = silent_host
    out = tmp_path / "report.json"
    started = time.monotonic()
    proc = run_cli("scan", "-c", uri, "-c", SEED, "--timeout", "2", "-f", "json", "-o", str(out))
    took = time.monotonic() - started
    assert (proc.returncode, proc.stdout) == (3, "")
    assert proc.stderr == f"snapaudit: cannot scan {uri}: timed out after 2 s\n"
    assert took < 10  # 2 s, plus starting Python; before, it never ended
    report = json.loads(out.read_text())
    assert [(h["uri"], h["error"]) for h in report["hosts"]] == [
        (uri, "timed out after 2 s"),
        (SEED, None),
    ]
    _, alone, _ = scan_json("-c", SEED)
    assert report["findings"] == alone["findings"]
    assert len(report["findings"]) == 4


def test_timeout_comes_from_the_configuration_file_and_the_command_line_wins(silent_host, tmp_path):
    uri, _ = silent_host
    config = tmp_path / "snapaudit.toml"
    config.write_text('fail_on = "never"\ntimeout = 0.5\n')
    code, report, stderr = scan_json("-c", uri, "-c", CLEAN, "--config", str(config))
    assert code == 3
    assert stderr == f"snapaudit: cannot scan {uri}: timed out after 0.5 s\n"
    assert [h["error"] for h in report["hosts"]] == ["timed out after 0.5 s", None]
    code, report, _ = scan_json("-c", uri, "--config", str(config), "--timeout", "1")
    assert [h["error"] for h in report["hosts"]] == ["timed out after 1 s"]

    assert timeout_lines(config) == [f"timeout = 0.5 # {config}:2"]
    (tmp_path / "empty.toml").write_text("")
    assert timeout_lines(tmp_path / "empty.toml") == ["timeout = 300 # default"]


def timeout_lines(config: Path) -> list[str]:
    shown = run_cli("config", "--show", "--config", str(config)).stdout.splitlines()
    return [" ".join(line.split()) for line in shown if line.startswith("timeout")]


@pytest.mark.parametrize("value", ["0", "-1", '"5m"', "true", "nan", "inf", "1" + "0" * 400])
def test_a_timeout_that_is_not_a_positive_number_is_refused(tmp_path, value):
    config = tmp_path / "bad.toml"
    config.write_text(f"\ntimeout = {value}\n")
    proc = run_cli("scan", "-c", CLEAN, "--config", str(config))
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == f"snapaudit: {config}:2: timeout must be a positive number of seconds\n"


@pytest.mark.parametrize("value", ["0", "-3", "inf", "nan"])
def test_a_command_line_timeout_that_is_not_positive_is_refused(value):
    proc = run_cli("scan", "-c", CLEAN, f"--timeout={value}")
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == "snapaudit: --timeout must be a positive number of seconds\n"


def test_a_host_whose_scan_raises_is_that_hosts_error(bad_utf8_host, tmp_path):
    uri, path = bad_utf8_host
    out = tmp_path / "report.json"
    proc = run_cli("scan", "-c", uri, "-c", SEED, "-f", "json", "-o", str(out))
    error = f"{path}:4: Input is not proper UTF-8, indicate encoding !"
    assert (proc.returncode, proc.stdout) == (3, "")
    assert proc.stderr == f"snapaudit: cannot scan {uri}: {error}\n"
    report = json.loads(out.read_text())
    assert [(h["uri"], h["error"]) for h in report["hosts"]] == [(uri, error), (SEED, None)]
    assert [f["rule"] for f in report["findings"]] == ["SNAP001", "SNAP002", "SNAP013", "SNAP017"]


def test_scan_hosts_reports_every_host_in_place(bad_utf8_host, silent_host):
    bad, path = bad_utf8_host
    silent, _ = silent_host
    scans = dict(scan_hosts([silent, bad, CLEAN], timeout=1))
    assert sorted(scans) == [0, 1, 2]
    assert scans[0] == HostScan(Host(uri=silent, error="timed out after 1 s"))
    assert scans[1] == HostScan(
        Host(uri=bad, error=f"{path}:4: Input is not proper UTF-8, indicate encoding !")
    )
    assert scans[2].host.error is None
    assert [d.name for d in scans[2].domains] == ["clean01", "nosnap01"]


def test_run_each_yields_results_failures_and_timeouts_as_they_come():
    release = threading.Event()
    boom = RuntimeError("boom")

    def fail():
        raise boom

    def hang():
        release.wait()
        return "late"

    started = time.monotonic()
    outcomes = list(run_each([lambda: "first", fail, hang, lambda: "last"], 0.5, workers=2))
    took = time.monotonic() - started
    release.set()
    assert sorted(outcomes, key=lambda o: o[0]) == [
        (0, "first"),
        (1, Raised(boom)),
        (2, TimedOut(0.5)),
        (3, "last"),
    ]
    assert outcomes[-1] == (2, TimedOut(0.5))
    assert 0.5 <= took < 1.5


def test_run_all_works_on_every_item_and_raises_the_first_error():
    seen = []
    lock = threading.Lock()

    def work(item):
        with lock:
            seen.append(item)
        if item == 3:
            raise ValueError(item)

    with pytest.raises(ValueError, match="3"):
        run_all(work, range(8), workers=3)
    assert sorted(seen) == list(range(8))


# --- what could not be audited, on stderr ------------------------------------------------------


def test_rule_errors_are_said_on_stderr_when_the_report_goes_to_a_file(plugin_path, tmp_path):
    out = tmp_path / "r.json"
    proc = run_cli(
        "scan", "-c", SEED, "-f", "json", "-o", str(out), env={"PYTHONPATH": str(plugin_path)}
    )
    assert (proc.returncode, proc.stdout) == (3, "")
    assert proc.stderr.splitlines() == [
        "snapaudit: rule acme-duplicate error: acme_rules:acme_duplicate: duplicate rule code"
        " SNAP001 (already used by internal-memory)",
        "snapaudit: rule acme-missing error: failed to load acme_rules_missing:rule:"
        " ModuleNotFoundError: No module named 'acme_rules_missing'",
        "snapaudit: rule acme-not-a-rule error: acme_rules:not_a_rule: is not a rule (decorate"
        " the check function with @auditor.rule.rule)",
        f"snapaudit: rule ACME002 error on {SEED} vm-name/sample-snapshot-name-2: raised"
        " RuntimeError: boom",
        f"snapaudit: rule ACME002 error on {SEED} vm-name/sample-snapshot-name-1: raised"
        " RuntimeError: boom",
    ]
    # Text on stdout shows them already: nothing is repeated on stderr.
    text = run_cli("scan", "-c", SEED, env={"PYTHONPATH": str(plugin_path)})
    assert (text.returncode, text.stderr) == (3, "")


def test_many_rule_errors_are_counted_in_one_line_that_names_the_report(plugin_path, tmp_path):
    hosts = [fixture_uri(f"rules/SNAP0{i:02d}.xml") for i in (1, 2, 3)]
    out = tmp_path / "r.json"
    args = [a for uri in hosts for a in ("-c", uri)]
    proc = run_cli("scan", *args, "-f", f"json:{out}", env={"PYTHONPATH": str(plugin_path)})
    report = json.loads(out.read_text())
    assert (proc.returncode, proc.stdout) == (3, "")
    count = len(report["rule_errors"])
    assert count > 10
    assert proc.stderr == f"snapaudit: not audited: {count} rule errors; listed in {out}\n"


def _result(skipped=(), errors=(), waivers=()) -> ScanResult:
    return ScanResult(
        generated_at=datetime(2025, 1, 1, tzinfo=UTC),
        hosts=(
            HostScan(Host(uri="qemu:///a", error="timed out after 2 s")),
            HostScan(Host(uri="qemu:///b"), skipped=tuple(skipped)),
        ),
        findings=(),
        rule_errors=tuple(errors),
        waivers=tuple(waivers),
    )


def test_problem_lines_name_every_host_item_and_rule_error():
    waiver = Waiver("SNAP002", "r", "o", date(2024, 1, 1), origin="site.toml:3")
    result = _result(
        skipped=[
            Skipped("qemu:///b", "vm1", None, "domain definition: bad XML"),
            Skipped("qemu:///b", "vm1", "s1", "XML error"),
            Skipped("qemu:///b", "vm2", "gone", "snapshot disappeared", vanished=True),
        ],
        errors=[RuleError("SNAP002", "raised KeyError: 'x'", "qemu:///b", "vm1", "s2")],
        waivers=[WaiverUse(waiver, "expired", 0)],
    )
    assert problem_lines(result, [None]) == [
        "cannot scan qemu:///a: timed out after 2 s",
        "skipped domain vm1 on qemu:///b: domain definition: bad XML",
        "skipped snapshot vm1/s1 on qemu:///b: XML error",
        "rule SNAP002 error on qemu:///b vm1/s2: raised KeyError: 'x'",
        "expired waiver for SNAP002 (site.toml:3, expires 2024-01-01)",
    ]


def test_problem_lines_count_many_items_and_name_the_report():
    skipped = [Skipped("qemu:///b", "vm", f"s{i}", "XML error") for i in range(10)]
    errors = [RuleError("SNAP002", "raised", "qemu:///b", "vm", "s")]
    assert problem_lines(_result(skipped, errors), [Path("out/r.json"), None]) == [
        "cannot scan qemu:///a: timed out after 2 s",
        "not audited: 10 items skipped, 1 rule error; listed in out/r.json",
    ]
    assert problem_lines(_result(skipped), [None])[1:] == [
        f"skipped snapshot vm/s{i} on qemu:///b: XML error" for i in range(10)
    ]
    assert problem_lines(_result(skipped + skipped[:1]), [None])[1:] == [
        "not audited: 11 items skipped; listed in the report"
    ]


# --- keepalive -----------------------------------------------------------------------------------


class FreezingProxy:
    """127.0.0.1:PORT forwarded to a unix socket, until freeze(): then every byte is held
    back in both directions while the connections stay open, as with a peer that died."""

    def __init__(self, target: str) -> None:
        self.target, self.frozen = target, threading.Event()
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(4)
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        while data := source.recv(65536):
            if self.frozen.is_set():
                return  # drop it, and everything after it
            sink.sendall(data)


@pytest.mark.qemu
def test_keepalive_notices_a_remote_host_that_died_mid_scan(libvirtd, monkeypatch):
    from auditor.sources.live import connection

    monkeypatch.setattr(connection, "KEEPALIVE_INTERVAL", 1)
    monkeypatch.setattr(connection, "KEEPALIVE_COUNT", 1)
    conn = libvirt.open(libvirtd.uri)
    xml = "<domain type='qemu'><name>keepalive-probe</name><memory>131072</memory>"
    xml += "<os><type arch='x86_64'>hvm</type></os></domain>"
    dom = conn.defineXML(xml)
    try:
        proxy = FreezingProxy(f"{libvirtd.socket}-ro")
        uri = f"qemu+tcp://127.0.0.1:{proxy.port}/system"

        def freeze_once_listed(_uri, done, _total):
            if done == 0:
                proxy.frozen.set()  # the domains are listed; every later call goes unanswered

        started = time.monotonic()
        ((_, scan),) = list(scan_hosts([uri], freeze_once_listed, False, timeout=60))
        took = time.monotonic() - started
    finally:
        dom.undefine()
        conn.close()
    assert took < 15  # a keepalive timeout, not the 60 s deadline
    assert scan.host.error is None
    reasons = {s.reason for s in scan.skipped}
    assert reasons and all("keepalive" in r for r in reasons), reasons
