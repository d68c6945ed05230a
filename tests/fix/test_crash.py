"""`kill -9` at every step of a conversion: `--resume` then finishes it, `--rollback` undoes it
exactly, and in both cases every byte of every disk state is intact.

The process kills itself (SNAPAUDIT_FIX_KILL_AFTER_STEP, read by tests/faulty_snapaudit.py)
right after journaling step k, or, with SNAPAUDIT_FIX_KILL_BEFORE_JOURNAL, after doing step k
but before journaling it: the two edges of every step. Scenarios run a few at a time, each on
its own small domain.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import libvirt
import pytest

from testlab.trees import read_back
from tests.fix.crashes import crash_tree, kill_then_recover, resumed_problems, rolled_back_problems
from tests.helpers import run_cli

pytestmark = pytest.mark.qemu
WORKERS = 4
# 5 images (s1, s2, the empty overlay after s2, s3, now) created and verified, 3 snapshots
# dropped and redefined, the domain defined.
STEPS = 17


def nbd_servers_for(directory: Path) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_text()
        except OSError:
            continue
        if proc.name.isdigit() and "qemu-nbd" in cmdline and str(directory) in cmdline:
            found.append(proc.name)
    return found


def scenario(uri: str, root: Path, k: int, mode: str) -> list[str]:
    """Kill a conversion at step K, then recover per MODE; what went wrong, if anything."""
    conn = libvirt.open(uri)
    try:
        images, state = root / "images", root / "state"
        tree = crash_tree(conn, root.name, images)
        before, files = tree.metadata(), sorted(images.iterdir())
        original_sha = hashlib.sha256(tree.images["vda"].read_bytes()).hexdigest()
        how, problems = kill_then_recover(uri, root.name, state, k, mode)
        if not how:
            return problems
        if how == "--resume":
            problems += resumed_problems(tree, images)
        else:
            problems += rolled_back_problems(tree, before, files, images)
            for name, states in tree.states.items():
                problems += read_back(tree.images["vda"], states["vda"], snapshot=name)
            problems += read_back(tree.images["vda"], tree.now["vda"])
        if hashlib.sha256(tree.images["vda"].read_bytes()).hexdigest() != original_sha:
            problems.append("the original image was written")
        if nbd_servers_for(images):
            problems.append("qemu-nbd outlived the killed process")
        return problems
    finally:
        conn.close()


def test_plan_has_the_steps_the_crash_test_covers(conn, libvirtd, tmp_path):
    crash_tree(conn, "crash-plan", tmp_path / "images")
    proc = run_cli("fix", "-c", libvirtd.uri, "--domain", "crash-plan", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    (plan,) = json.loads(proc.stdout)["domains"]
    assert [s["kind"] for s in plan["steps"]] == [
        *["create-image", "verify-image"] * 2,
        "create-overlay",
        "verify-image",
        *["create-image", "verify-image"] * 2,
        *["drop-snapshot-metadata"] * 3,
        *["redefine-snapshot"] * 3,
        "define-domain",
    ]
    assert len(plan["steps"]) == STEPS


def test_kill_at_every_step_then_resume_or_roll_back(conn, libvirtd, tmp_path):
    modes = ("journaled-resume", "unjournaled-resume", "unjournaled-rollback")
    cases = [(k, mode) for k in range(1, STEPS + 1) for mode in modes]
    with ThreadPoolExecutor(WORKERS) as pool:
        results = pool.map(
            lambda case: scenario(libvirtd.uri, tmp_path / f"crash-{case[1]}-{case[0]}", *case),
            cases,
        )
        problems = {f"step {k} {mode}": p for (k, mode), p in zip(cases, results, strict=True) if p}
    assert problems == {}
