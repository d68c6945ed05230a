"""Metadata directories read by worker processes: the same host, findings and report bytes as
one process reading it alone, hostile files included, and a stop that leaves no worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from auditor.pipeline import run
from auditor.reports import render
from auditor.sources.offline import batches, metadata_dir
from auditor.sources.offline.metadata_dir import scan_metadata_dir
from tests.helpers import CLOCK, run_cli
from tests.sources.bundles import snapshot_xml

SNAPAUDIT = str(Path(sys.executable).parent / "snapaudit")


def hostile_tree(root: Path, domains: int) -> None:
    """DOMAINS domains of two snapshots each, and among them the files a copy may hold that
    cannot be audited: they are spread over several batches."""
    for d in range(domains):
        directory = root / f"vm{d:03d}"
        directory.mkdir(parents=True)
        (directory / "a.xml").write_bytes(snapshot_xml("a", active=0))
        (directory / "b.xml").write_bytes(snapshot_xml("b", active=1, mode="external"))
    (root / "vm001" / "link.xml").symlink_to("/etc/shadow")
    os.mkfifo(root / "vm010" / "fifo.xml")
    (root / "vm020" / "broken.xml").write_bytes(b"<domainsnapshot><name>")
    (root / "vm030" / "dtd.xml").write_bytes(b'<!DOCTYPE x [<!ENTITY e "boom">]>')
    (root / "zz-link").symlink_to(root / "vm000")


@pytest.fixture
def serial(monkeypatch):
    """Everything read in this process, as a tree of a single batch is."""

    def one_process():
        monkeypatch.setattr(batches, "_cpus", lambda: 1)

    return one_process


@pytest.fixture
def forked(tmp_path, monkeypatch):
    """A hostile tree of 40 domains in TMP_PATH, read in batches of 3 by 2 worker processes.
    Earlier tests may leave idle threads in this process, which would keep the workers from
    being forked (the guard has its own test below): they are forked all the same."""
    hostile_tree(tmp_path, 40)
    monkeypatch.setattr(metadata_dir, "BATCH", 3)
    monkeypatch.setattr(batches, "_cpus", lambda: 2)
    monkeypatch.setattr(batches, "_threads", lambda: 1)


def test_workers_build_the_same_host_as_one_process(tmp_path, forked, serial):
    parent = os.getpid()
    checked: dict = {}
    scan = scan_metadata_dir(tmp_path, host_name="hv", check=lambda d: os.getpid(), checked=checked)
    serial()
    alone = scan_metadata_dir(tmp_path, host_name="hv")
    assert scan == alone
    assert len(scan.domains) == 40 and len(scan.snapshots) == 80
    assert [(s.domain, s.snapshot) for s in scan.skipped] == [
        ("vm001", "link"),
        ("vm010", "fifo"),
        ("vm020", "broken"),
        ("vm030", "dtd"),
        ("zz-link", None),
    ]
    # Each domain was checked once, in a worker, and its result kept under its own name.
    assert sorted(checked) == sorted((d.name, d.uuid) for d in scan.domains)
    assert parent not in checked.values() and len(set(checked.values())) == 2


class Unsendable:
    """A value a plugin rule might return that pickle refuses."""

    def __reduce__(self):
        raise TypeError("cannot be sent")


def test_a_batch_whose_results_cannot_be_sent_back_is_worked_here(tmp_path, forked, serial):
    parent = os.getpid()

    def check(domain):
        return Unsendable() if domain.name == "vm004" else os.getpid()

    checked: dict = {}
    scan = scan_metadata_dir(tmp_path, host_name="hv", check=check, checked=checked)
    serial()
    assert scan == scan_metadata_dir(tmp_path, host_name="hv")
    by_name = {name: value for (name, _), value in checked.items()}
    assert isinstance(by_name.pop("vm004"), Unsendable)
    # vm004's batch (vm003-vm005) was worked again in this process; every other in a worker.
    assert [n for n, pid in sorted(by_name.items()) if pid == parent] == ["vm003", "vm005"]
    assert len(by_name) == 39


def test_a_worker_that_dies_leaves_the_host_unaudited_and_says_why(tmp_path, forked):
    parent = os.getpid()

    def check(domain):
        if domain.name == "vm010" and os.getpid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's OOM killer would

    scan = scan_metadata_dir(tmp_path, host_name="hv", check=check, checked={})
    assert scan.host.error == "a worker process died (killed, or out of memory)"
    assert (scan.domains, scan.skipped) == ((), ())


def test_a_process_with_other_threads_reads_without_forking(tmp_path, monkeypatch):
    hostile_tree(tmp_path, 40)
    monkeypatch.setattr(metadata_dir, "BATCH", 3)
    monkeypatch.setattr(batches, "_cpus", lambda: 2)
    release = threading.Event()
    blocked = threading.Thread(target=release.wait)  # as a host's call that timed out
    blocked.start()
    try:
        checked: dict = {}
        scan_metadata_dir(tmp_path, host_name="hv", check=lambda d: os.getpid(), checked=checked)
    finally:
        release.set()
        blocked.join()
    assert set(checked.values()) == {os.getpid()} and len(checked) == 40


def test_a_report_read_by_workers_is_byte_for_byte_the_one_read_alone(
    tmp_path, monkeypatch, serial
):
    tree = tmp_path / "snapshot"
    hostile_tree(tree, 70)  # more than one batch: the CLI reads it with worker processes
    proc = run_cli("scan", "--from", str(tree), "--format", "json", "--host-name", "hv")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", CLOCK)
    serial()
    clock = datetime.fromtimestamp(int(CLOCK), tz=UTC)
    result, _ = run([], offline=[tree], host_name="hv", as_of=clock)
    assert (proc.returncode, proc.stdout) == (3, render("json", result))
    path = f"{tree}/"
    assert proc.stderr.splitlines() == [
        f"snapaudit: skipped snapshot vm001/link on hv: {path}vm001/link.xml: is a symbolic "
        "link: not followed",
        f"snapaudit: skipped snapshot vm010/fifo on hv: {path}vm010/fifo.xml: is not a regular "
        "file (a FIFO)",
        "snapaudit: skipped snapshot vm020/broken on hv: invalid XML: Premature end of data in "
        "tag name line 1, line 1, column 23",
        f"snapaudit: skipped snapshot vm030/dtd on hv: {path}vm030/dtd.xml: holds a DTD or "
        "entity declarations",
        f"snapaudit: skipped domain zz-link on hv: {path}zz-link: is a symbolic link: not followed",
    ]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one CPU: no worker processes")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_ends_the_scan_and_its_workers(tmp_path, signum):
    for d in range(3000):  # long enough to be stopped half way on any machine
        directory = tmp_path / f"vm{d:04d}"
        directory.mkdir()
        (directory / "a.xml").write_bytes(snapshot_xml("a"))
    proc = subprocess.Popen(
        [SNAPAUDIT, "scan", "--from", str(tmp_path), "-o", str(tmp_path / "report.txt")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        workers = _children(proc.pid, count=2, within=30)
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert (proc.returncode, stdout) == (128 + signum, "")
    assert stderr == f"snapaudit: stopped by {signal.Signals(signum).name}\n"
    assert not (tmp_path / "report.txt").exists()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in workers)


def _children(pid: int, count: int, within: float) -> list[int]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except FileNotFoundError:
            found = []
        if len(found) >= count:
            return [int(p) for p in found]
        time.sleep(0.01)
    raise AssertionError(f"no {count} worker processes within {within} s")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie is dead, waiting for a parent that is gone too
