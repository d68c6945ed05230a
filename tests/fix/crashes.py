"""A conversion killed at one of its steps and then recovered, and what is checked after it:
the crash test's branched tree, the kill and the recovery, and the problems a resume or a
rollback leaves. Shared by the crash, mixed-tree and signal tests."""

from __future__ import annotations

from pathlib import Path

import libvirt

from testlab.trees import SnapshotTree, disk_sources, read_back
from tests.helpers import run_cli


def crash_tree(conn: libvirt.virConnect, name: str, directory: Path) -> SnapshotTree:
    """s1 ─┬─ s2
    └─ s3 (current) ── now"""
    tree = SnapshotTree(conn, name, directory)
    tree.write("vda", 0, 0x11, 2)
    tree.snapshot("s1")
    tree.write("vda", 2, 0x22)
    tree.snapshot("s2")
    tree.revert("s1")
    tree.write("vda", 3, 0x33)
    tree.snapshot("s3")
    tree.write("vda", 4, 0x44)
    return tree


def kill_then_recover(uri: str, name: str, state: Path, k: int, mode: str) -> tuple[str, list[str]]:
    """Run --apply on domain NAME, killed at step K (before its journal record, unless MODE
    is journaled-resume), then recover per MODE: (the recovery's option, what went wrong)."""
    kill = {"SNAPAUDIT_FIX_KILL_AFTER_STEP": str(k)}
    if mode != "journaled-resume":
        kill["SNAPAUDIT_FIX_KILL_BEFORE_JOURNAL"] = "1"
    args = ("fix", "-c", uri, "--state-dir", str(state), "--domain", name, "--apply")
    crashed = run_cli(*args, env=kill, faulty=True)
    if crashed.returncode != -9:
        return "", [f"not killed: exit {crashed.returncode}: {crashed.stderr}"]
    (journal,) = state.glob("*.journal")
    how = "--resume" if mode.endswith("resume") else "--rollback"
    done = run_cli("fix", how, str(journal))
    return how, [] if done.returncode == 0 else [f"exit {done.returncode}: {done.stdout}"]


def resumed_problems(tree: SnapshotTree, images: Path) -> list[str]:
    """After a resume: every snapshot and the current state read back exactly, no .part."""
    problems = []
    for name, states in tree.states.items():
        xml = tree.dom.snapshotLookupByName(name).getXMLDesc()
        problems += read_back(disk_sources(xml, "domain")["vda"], states["vda"])
    problems += read_back(disk_sources(tree.dom.XMLDesc())["vda"], tree.now["vda"])
    if [p for p in images.iterdir() if p.suffix == ".part"]:
        problems.append("unfinished .part files left behind")
    return problems


def rolled_back_problems(tree: SnapshotTree, before: dict, files: list[Path], images: Path):
    """After a rollback: the metadata as BEFORE, exactly FILES in IMAGES."""
    problems = []
    if tree.metadata() != before:
        problems.append("metadata differs from the original")
    if sorted(images.iterdir()) != files:
        problems.append(f"files left: {sorted(images.iterdir())}")
    return problems
