"""SIGINT and SIGTERM: a scan stuck on a host that never answers stops at once (no report,
exit 130 or 143, no traceback); a conversion stops between two steps with its journal
consistent, and `--resume` finishes it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import libvirt
import pytest

from auditor.fix.journal import Journal
from testlab.trees import disk_sources, read_back, removed_afterwards
from tests.fix.crashes import crash_tree
from tests.helpers import SNAPAUDIT, fixture_uri, pinned, run_cli

CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


def start(*args: str, session: bool = False, path: str | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [SNAPAUDIT, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=pinned({"PATH": path or os.environ["PATH"]}),
        start_new_session=session,
    )


def slow_qemu_img(directory: Path) -> str:
    """A PATH where every qemu-img starts half a second late, so that a signal sent while a
    step runs finds its qemu-img running."""
    directory.mkdir()
    real = shutil.which("qemu-img")
    wrapper = directory / "qemu-img"
    wrapper.write_text(f'#!/bin/sh\nsleep 0.5\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    return f"{directory}:{os.environ['PATH']}"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_scan_stuck_on_a_silent_host_stops_on_the_signal(tmp_path, signum):
    server = socket.socket()  # accepts, never reads or answers
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    server.settimeout(30)
    uri = f"qemu+tcp://127.0.0.1:{server.getsockname()[1]}/system"
    out = tmp_path / "report.json"
    proc = start("scan", "-c", fixture_uri("seed_examples.xml"), "-c", uri, "-o", str(out))
    try:
        connection, _ = server.accept()  # the scan is now waiting on the silent host
        time.sleep(0.5)
        sent = time.monotonic()
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=10)
        took = time.monotonic() - sent
    finally:
        proc.kill()
        server.close()
    connection.close()
    assert (proc.returncode, stdout) == (CODES[signum], "")
    assert stderr == f"snapaudit: stopped by {signal.Signals(signum).name}\n"
    assert took < 2
    assert list(tmp_path.iterdir()) == []  # no report, not even a temporary file


@pytest.mark.qemu
@pytest.mark.parametrize(
    ("signum", "group"), [(signal.SIGINT, False), (signal.SIGTERM, False), (signal.SIGINT, True)]
)
def test_fix_stops_between_steps_and_resume_finishes(libvirtd, tmp_path, signum, group):
    """GROUP: the signal goes to fix's whole process group, as Ctrl-C in a terminal sends it;
    the qemu-img running the step is in a group of its own, so the step still finishes."""
    conn = libvirt.open(libvirtd.uri)
    name = f"stop-{signum}-{group}"
    with removed_afterwards(conn):
        tree = crash_tree(conn, name, tmp_path / "images")
        state = tmp_path / "state"
        args = ("fix", "-c", libvirtd.uri, "--state-dir", str(state), "--domain", name)
        slow = slow_qemu_img(tmp_path / "bin") if group else None
        proc = start(*args, "--apply", session=group, path=slow)
        announced = []
        for line in proc.stderr:
            if line.startswith("snapaudit: ["):
                announced.append(line)
            if line.startswith("snapaudit: [3/"):
                if group:  # while step 3's qemu-img runs
                    time.sleep(0.25)
                    os.killpg(proc.pid, signum)
                else:
                    proc.send_signal(signum)
                break
        rest = proc.stderr.read()
        proc.wait(timeout=60)
        assert proc.returncode == CODES[signum], rest
        assert rest.endswith(f"snapaudit: stopped by {signal.Signals(signum).name}\n")
        announced += [line for line in rest.splitlines(True) if line.startswith("snapaudit: [")]
        assert "Traceback" not in rest
        (path,) = state.glob("*.journal")
        journal = Journal.load(path)
        # Stopped at a boundary: every step it began was finished and journaled, no more.
        assert sorted(journal.done) == list(range(1, len(announced) + 1))
        assert len(announced) >= 3
        assert not list((tmp_path / "images").glob("*.part"))

        resumed = run_cli("fix", "--resume", str(path))
        assert resumed.returncode == 0, resumed.stderr + resumed.stdout
        problems = []
        for snap, states in tree.states.items():
            image = disk_sources(tree.dom.snapshotLookupByName(snap).getXMLDesc(), "domain")
            problems += read_back(image["vda"], states["vda"])
        problems += read_back(disk_sources(tree.dom.XMLDesc())["vda"], tree.now["vda"])
        assert problems == []
    conn.close()


def test_a_child_whose_parent_died_before_it_was_armed_exits():
    """PR_SET_PDEATHSIG fires only for a parent that dies after the prctl: a child that finds
    another parent than the one that started it (it died in between) must not run on."""
    script = """
import os, subprocess
from auditor.stopping import die_with_parent
arm = die_with_parent()  # names this process
if os.fork() == 0:  # the child's parent is another: as if this one had died before the prctl
    late = subprocess.Popen(["sleep", "30"], preexec_fn=arm).wait()
    mine = subprocess.Popen(["true"], preexec_fn=die_with_parent()).wait()
    print(late, mine, flush=True)
    os._exit(0)
os.wait()
"""
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=20
    )
    assert (proc.stdout, proc.stderr) == ("1 0\n", "")
