"""A small domain of its own for a test that stops fix at a fault point: fix run on it with its
fault points armed, waited for until it stops, recovered the way each failure says, and
checked byte for byte. Shared by the fault, guest, hold and review tests."""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
from pathlib import Path

import libvirt

from testlab.trees import SnapshotTree, disk_sources, read_back
from tests.helpers import run_cli, start_cli

NEXT = re.compile(r"snapaudit fix (--resume|--rollback) (\S+)")


def small_tree(
    conn: libvirt.virConnect, name: str, directory: Path, *, guest: bool = False
) -> SnapshotTree:
    """s1 ── s2 (current) ── now; GUEST: with the lab's guest (testlab.guest)."""
    tree = SnapshotTree(conn, name, directory, guest=guest)
    tree.write("vda", 0, 0x11, 2)
    tree.snapshot("s1")
    tree.write("vda", 2, 0x22)
    tree.snapshot("s2")
    tree.write("vda", 3, 0x33)
    return tree


def wait_stopped(proc: subprocess.Popen) -> bool:
    """Wait until PROC stops itself at its fault point; False if it ended first."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        with contextlib.suppress(OSError):
            if Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T":
                return True
        time.sleep(0.01)
    raise AssertionError("the fix never reached its fault point")


class Scenario:
    def __init__(self, uri: str, root: Path, make_tree=small_tree):
        self.uri, self.root = uri, root
        self.conn = libvirt.open(uri)
        self.images, self.state = root / "images", root / "state"
        self.tree = make_tree(self.conn, root.name, self.images)
        self.original = self.tree.images["vda"]
        self.before = self.tree.metadata()
        self.files = sorted(self.images.iterdir())
        self.problems: list[str] = []

    def journal(self) -> Path:
        (journal,) = self.state.glob("*.journal")
        return journal

    def apply(self, env: dict) -> subprocess.Popen:
        """--apply --remove-originals, its fault points armed by ENV."""
        args = ["-c", self.uri, "--state-dir", str(self.state), "--domain", self.root.name]
        return start_cli("fix", *args, "--apply", "--remove-originals", env=env, faulty=True)

    def defined_on_original(self) -> bool:
        return disk_sources(self.tree.dom.XMLDesc())["vda"] == str(self.original)

    def write_original(self) -> None:
        """The guest ran on its original image and wrote to it (fix not running)."""
        if self.original.exists():
            self.tree.write("vda", 5, 0x55)

    def try_start(self, phase: str) -> None:
        """Start the domain while fix is stopped at a boundary: it must not run on its
        originals while they are being converted (a rollback restores them: there it may);
        on its new images it may, and then it is shut off again."""
        try:
            self.tree.dom.create()
        except libvirt.libvirtError as exc:
            if "lock" not in str(exc):
                self.problems.append(f"start failed, not on a lock: {exc}")
            return
        on_original = self.defined_on_original()
        self.tree.dom.destroy()
        if on_original and phase != "rollback":
            self.problems.append("the domain started on its original image")

    def recover(self, first: str) -> str:
        """Run FIRST, then whatever each failure names, until one succeeds."""
        option, seen = first, []
        for _ in range(4):
            proc = run_cli("fix", option, str(self.journal()))
            seen.append(f"{option}: exit {proc.returncode}: {proc.stdout.strip()}")
            if proc.returncode == 0:
                return option
            if proc.returncode < 0:
                option = first
                continue
            if "Traceback" in proc.stderr or "Error:" in proc.stdout:
                self.problems.append(f"a traceback or class name: {proc.stdout}{proc.stderr}")
            named = NEXT.findall(proc.stdout)
            if len(named) > 1:
                self.problems.append(f"more than one command named: {proc.stdout.strip()}")
                return ""
            # Nothing named: the job is done one way (the conversion finished, or was rolled
            # back), so the other command has nothing to do and says so.
            other = "--rollback" if option == "--resume" else "--resume"
            option = named[0][0] if named else other
        self.problems.append("dead end: " + " | ".join(seen))
        return ""

    def check(self, finished: str) -> list[str]:
        tree, problems = self.tree, self.problems
        if self.tree.dom.isActive():
            problems.append("the domain was left running")
        if finished == "--resume":
            for name, states in tree.states.items():
                xml = tree.dom.snapshotLookupByName(name).getXMLDesc()
                problems += read_back(disk_sources(xml, "domain")["vda"], states["vda"])
            problems += read_back(disk_sources(tree.dom.XMLDesc())["vda"], tree.now["vda"])
            if self.original.exists():
                problems.append("the original was not removed")
            if list(self.images.glob("*.part")):
                problems.append("unfinished .part files left behind")
        elif finished == "--rollback":
            if tree.metadata() != self.before:
                problems.append("metadata differs from the original")
            if sorted(self.images.iterdir()) != self.files:
                problems.append(f"files left: {sorted(self.images.iterdir())}")
            for name, states in tree.states.items():
                problems += read_back(self.original, states["vda"], snapshot=name)
            problems += read_back(self.original, tree.now["vda"])
        for entry in Path("/tmp").glob("snapaudit-nbd-*-*"):
            pid = entry.name.split("-")[2]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                problems.append(f"stale {entry}")
        return problems

    def close(self) -> None:
        self.conn.close()
