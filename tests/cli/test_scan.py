"""The command line as users and CI gates run it: exit codes, hosts, output files, progress."""

from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.helpers import CLOCK, FIXTURES, SNAPAUDIT, fixture_uri, run_cli

CLEAN = fixture_uri("clean_host.xml")
SEED = fixture_uri("seed_examples.xml")
WARN_ONLY = fixture_uri("rules/SNAP006.xml")
MISSING = "test:///nonexistent/node.xml"


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["-c", CLEAN], 0),
        (["-c", SEED], 1),
        (["-c", SEED, "--fail-on", "never"], 0),
        (["-c", WARN_ONLY], 0),
        (["-c", WARN_ONLY, "--fail-on", "warning"], 1),
        (["-c", WARN_ONLY, "--fail-on", "info"], 1),
        (["-c", CLEAN, "--fail-on", "info"], 0),
        (["-c", CLEAN, "-c", MISSING], 3),
        (["-c", SEED, "-c", MISSING], 3),  # 3 wins over 1
        (["-c", SEED, "-c", MISSING, "--fail-on", "never"], 3),
        (["-c", CLEAN, "--format", "xml"], 2),
        (["-c", CLEAN, "--fail-on", "sometimes"], 2),
        (["-c", CLEAN, "--bogus"], 2),
    ],
)
def test_exit_codes(args, code):
    proc = run_cli("scan", *args)
    assert proc.returncode == code, proc.stderr


def test_usage_errors_exit_2():
    assert run_cli("frobnicate").returncode == 2
    unknown = run_cli("explain", "SNAP999")
    assert (unknown.returncode, unknown.stdout, unknown.stderr) == (
        2,
        "",
        "snapaudit: unknown rule 'SNAP999'; `snapaudit rules` lists them\n",
    )


# The seed examples are two snapshots of one VM, one of each kind: a mixed tree.
MIXED = (
    "mixed snapshot tree: 1 internal snapshot and 1 external; libvirt refuses to delete an"
    " external snapshot whose parent is internal (older libvirt deleted the base image), and a"
    " revert across kinds strands overlays"
)


def test_text_report_is_exact():
    proc = run_cli("scan", "-c", SEED, "-c", CLEAN)
    assert proc.returncode == 1
    assert proc.stderr == ""
    assert proc.stdout == (
        f"{SEED}  vm-name/sample-snapshot-name-2  SNAP001 error    memory state is stored"
        " inside the disk image (internal snapshot)\n"
        f"{SEED}  vm-name/sample-snapshot-name-2  SNAP002 error    disk vda is captured inside"
        " its own image (internal snapshot)\n"
        f"{SEED}  vm-name/sample-snapshot-name-2  SNAP013 warning  snapshot is 540 days old"
        " (limit: 30 days)\n"
        f"{SEED}  vm-name/sample-snapshot-name-2  SNAP017 error    {MIXED}\n"
        "2 hosts, 3 domains, 3 snapshots: 2 compliant, 1 noncompliant; findings: 3 error,"
        " 1 warning, 0 info\n"
    )


def test_host_column_is_as_wide_as_the_longest_host_uri_up_to_48():
    # Copies of the fixtures under a short directory (/tmp/saXXXXXXXX: 15 characters), so
    # that the URIs' lengths are known: 28, 36 and 52.
    short = Path(tempfile.mkdtemp(prefix="sa", dir="/tmp"))
    names = ("a.xml", "host-b001.xml", "c" * 25 + ".xml")
    try:
        shutil.copy(FIXTURES / "rules/SNAP006.xml", short / names[0])
        shutil.copy(FIXTURES / "seed_examples.xml", short / names[1])
        shutil.copy(FIXTURES / "rules/SNAP006.xml", short / names[2])
        a, b, c = (f"test://{short}/{name}" for name in names)
        assert [len(a), len(b), len(c)] == [28, 36, 52]
        excluded = (
            "files01/fail-data-disk-excluded  SNAP006 warning  writable disk vdb is not part"
            " of the snapshot: a revert leaves it out of step"
        )
        seed = "vm-name/sample-snapshot-name-2   SNAP"  # padded by 1 to the excluded's 31
        proc = run_cli("scan", "-c", a, "-c", b, "--fail-on", "never")
        assert (proc.returncode, proc.stderr) == (0, "")
        assert proc.stdout.splitlines() == [
            f"{a}{' ' * 8}  {excluded}",  # padded by 8 to b's 36
            f"{b}  {seed}001 error    memory state is stored inside the disk image"
            " (internal snapshot)",
            f"{b}  {seed}002 error    disk vda is captured inside its own image"
            " (internal snapshot)",
            f"{b}  {seed}013 warning  snapshot is 540 days old (limit: 30 days)",
            f"{b}  {seed}017 error    {MIXED}",
            "2 hosts, 2 domains, 4 snapshots: 3 compliant, 1 noncompliant; findings: 3 error,"
            " 2 warning, 0 info",
        ]
        # A URI longer than 48 widens the column to 48, and runs past it.
        proc = run_cli("scan", "-c", a, "-c", c, "--fail-on", "never")
        assert (proc.returncode, proc.stderr) == (0, "")
        assert proc.stdout.splitlines() == [
            f"{a}{' ' * 20}  {excluded}",
            f"{c}  {excluded}",
            "2 hosts, 2 domains, 4 snapshots: 4 compliant, 0 noncompliant; findings: 0 error,"
            " 2 warning, 0 info",
        ]
    finally:
        shutil.rmtree(short)


def test_unreachable_host_is_one_line_and_the_others_are_still_scanned(tmp_path):
    out = tmp_path / "report.json"
    proc = run_cli(
        "scan",
        "-c",
        "bogus+scheme:///x",
        "-c",
        SEED,
        "-c",
        MISSING,
        "--format",
        "json",
        "-o",
        str(out),
    )
    assert proc.returncode == 3
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("snapaudit: cannot scan bogus+scheme:///x: ")
    assert lines[1] == (
        f"snapaudit: cannot scan {MISSING}: Failed to open file '/nonexistent/node.xml':"
        " No such file or directory"
    )
    report = json.loads(out.read_text())
    assert [h["uri"] for h in report["hosts"]] == ["bogus+scheme:///x", SEED, MISSING]
    assert [h["error"] is None for h in report["hosts"]] == [False, True, False]
    assert report["summary"]["snapshots"] == 2
    assert [f["rule"] for f in report["findings"]] == ["SNAP001", "SNAP002", "SNAP013", "SNAP017"]


def test_text_report_names_hosts_that_were_not_scanned():
    proc = run_cli("scan", "-c", CLEAN, "-c", MISSING)
    assert proc.stdout.splitlines() == [
        f"{MISSING}: not scanned: Failed to open file '/nonexistent/node.xml':"
        " No such file or directory",
        "2 hosts, 2 domains, 1 snapshot: 1 compliant, 0 noncompliant; findings: 0 error,"
        " 0 warning, 0 info; incomplete: 1 host not scanned",
    ]


def test_default_uri_comes_from_libvirt_default_uri():
    proc = run_cli("scan", "--format", "json", env={"LIBVIRT_DEFAULT_URI": CLEAN})
    assert proc.returncode == 0, proc.stderr
    assert [h["uri"] for h in json.loads(proc.stdout)["hosts"]] == [CLEAN]


def test_output_file_holds_exactly_what_stdout_would(tmp_path):
    env = {"SOURCE_DATE_EPOCH": "1764000000"}
    for fmt in ("text", "json", "html"):
        out = tmp_path / f"report.{fmt}"
        to_file = run_cli("scan", "-c", SEED, "-f", fmt, "-o", str(out), env=env)
        to_stdout = run_cli("scan", "-c", SEED, "-f", fmt, env=env)
        assert (to_file.returncode, to_stdout.returncode) == (1, 1)
        assert to_file.stdout == ""
        assert out.read_bytes() == to_stdout.stdout.encode()
        assert oct(out.stat().st_mode & 0o777) == "0o644"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "report.html",
        "report.json",
        "report.text",
    ]


def test_an_output_file_without_format_gets_the_one_its_extension_names(tmp_path):
    extensions = {"html": "html", "json": "json", "sarif": "sarif", "xml": "junit"}
    extensions |= {"prom": "prometheus", "txt": "text", "HTML": "html", "out": "text"}
    for extension, fmt in extensions.items():
        out = tmp_path / f"r.{extension}"
        to_file = run_cli("scan", "-c", SEED, "-o", str(out))
        assert (to_file.returncode, to_file.stdout, to_file.stderr) == (1, "", "")
        assert out.read_text() == run_cli("scan", "-c", SEED, "-f", fmt).stdout, extension
    report = tmp_path / "r.json"
    merged = run_cli("merge", str(report), "-o", str(tmp_path / "m.html"))
    assert (merged.returncode, merged.stdout, merged.stderr) == (0, "", "")
    html = run_cli("merge", str(report), "-f", "html").stdout
    assert (tmp_path / "m.html").read_text() == html


def test_an_output_file_named_for_another_format_is_refused(tmp_path):
    page, sarif = tmp_path / "r.html", tmp_path / "r.sarif"
    for args in (
        ("scan", "-c", SEED, "-f", "json", "-o", str(page)),
        ("scan", "-c", SEED, "-f", f"json:{page}"),
        ("scan", "-c", SEED, "-f", "sarif", "-f", f"json:{page}"),
        ("merge", str(FIXTURES / "reports" / "sample.json"), "-f", "json", "-o", str(page)),
    ):
        proc = run_cli(*args)
        assert (proc.returncode, proc.stdout, proc.stderr) == (
            2,
            "",
            f"snapaudit: {page}: the extension .html is for html reports, not json\n",
        )
    proc = run_cli("scan", "-c", SEED, "-f", "junit", "-o", str(sarif))
    assert (
        proc.stderr == f"snapaudit: {sarif}: the extension .sarif is for sarif reports, not junit\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_demo_writes_an_html_report(tmp_path):
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "snapaudit"),
            "scan",
            "--demo",
            "--format",
            "html",
            "-o",
            "report.html",
            "--fail-on",
            "never",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    html = (tmp_path / "report.html").read_text()
    assert "<h1>snapaudit: snapshot compliance report</h1>" in html
    assert "7 domains, 9 snapshots" in html


def _run_in_terminal(args: list[str]) -> tuple[int, bytes]:
    """Run the CLI with stderr on a pseudo-terminal; return its exit code and what it drew."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "snapaudit"), *args],
        stdout=subprocess.DEVNULL,
        stderr=slave,
        env={**os.environ, "TERM": "xterm"},
    )
    os.close(slave)
    drawn = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        drawn += chunk
    os.close(master)
    return proc.wait(timeout=60), drawn


def test_progress_is_drawn_only_on_a_terminal():
    code, drawn = _run_in_terminal(["scan", "-c", CLEAN])
    assert code == 0
    assert CLEAN.encode() in drawn  # the progress bar is labelled with the host
    piped = run_cli("scan", "-c", CLEAN)
    assert piped.stderr == ""


def test_source_date_epoch_dates_the_report_but_ages_follow_the_real_clock():
    # Build systems set SOURCE_DATE_EPOCH everywhere: it must not make old snapshots look young.
    env = {k: v for k, v in os.environ.items() if k != "SNAPAUDIT_AS_OF"}
    env["SOURCE_DATE_EPOCH"] = CLOCK

    def ages(*args: str) -> list[tuple[str, str]]:
        proc = subprocess.run(
            [SNAPAUDIT, "scan", "-c", SEED, "-f", "json", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        report = json.loads(proc.stdout)
        assert (report["generated_at"], report["duration"]) == ("2023-11-15T22:13:20Z", None)
        return [(f["snapshot"], f["message"]) for f in report["findings"] if f["rule"] == "SNAP013"]

    assert ages("--as-of", f"@{CLOCK}") == [
        ("sample-snapshot-name-2", "snapshot is 540 days old (limit: 30 days)")
    ]
    days = (time.time() - int(CLOCK)) // 86400
    now = ages()
    assert [name for name, _ in now] == ["sample-snapshot-name-2", "sample-snapshot-name-1"]
    assert now[0][1] in {
        f"snapshot is {540 + days + d:.0f} days old (limit: 30 days)" for d in (0, 1)
    }


def test_as_of_takes_iso_8601_or_seconds_and_refuses_the_rest():
    for value in ("2023-11-15T22:13:20Z", "2023-11-15T22:13:20", "@1700086400"):
        proc = run_cli("scan", "-c", SEED, "-f", "json", "--as-of", value)
        assert json.loads(proc.stdout)["generated_at"] == "2023-11-15T22:13:20Z"
    proc = run_cli("scan", "-c", SEED, "--as-of", "yesterday")
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        2,
        "",
        "snapaudit: --as-of 'yesterday': not an ISO 8601 time or @SECONDS\n",
    )
