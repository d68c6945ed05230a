"""Mixed internal/external snapshot trees on a real libvirtd, built with libvirt's own calls:
the audit names them (SNAP017), fix converts them whole, every state reads back byte for
byte, and libvirt reverts to and deletes the converted snapshots."""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import libvirt
import pytest

from auditor.display import human_size
from testlab.images import create_qcow2
from testlab.pytest_fixtures import require
from testlab.trees import SnapshotTree, disk_sources, read_back
from testlab.vms import define_vm
from tests.fix.crashes import kill_then_recover, resumed_problems, rolled_back_problems
from tests.fix.mixed_trees import SHAPES, after_external, external, revert, sandwich
from tests.helpers import run_cli

pytestmark = pytest.mark.qemu


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def findings(uri: str, domain: str) -> list[tuple[str, str]]:
    scan = run_cli("scan", "-c", uri, "--format", "json", "--fail-on", "never")
    assert scan.returncode == 0, scan.stderr
    rows = [f for f in json.loads(scan.stdout)["findings"] if f["domain"] == domain]
    return sorted((f["rule"], f["snapshot"]) for f in rows)


@pytest.mark.parametrize("shape", SHAPES)
def test_mixed_tree_converts_whole(conn, libvirtd, tmp_path, shape):
    build, internal, unnamed_overlay = SHAPES[shape]
    images = tmp_path / "images"
    name = f"mixed-{shape}"
    tree = SnapshotTree(conn, name, images)
    build(tree, images)
    expected = [("SNAP002", s) for s in internal] + [("SNAP017", "int1")]
    if unnamed_overlay:
        expected.append(("SNAP012", str(tree.images["vda"])))
    assert findings(libvirtd.uri, name) == sorted(expected)
    originals = {p: sha256(p) for p in images.iterdir()}
    plan = run_cli("fix", "-c", libvirtd.uri, "--domain", name, "--format", "json")
    (planned,) = json.loads(plan.stdout)["domains"]
    base = images / f"{name}-0.qcow2"
    assert planned["notes"] == (
        [
            f"snapshot 'ext1': disk vda's state is in {base}, which the domain writes to now "
            "(a revert to an internal snapshot rewrote it); it is kept as that image is now, "
            "as reverting to it shows today"
        ]
        if shape == "reverted"
        else []
    )
    text = run_cli("fix", "-c", libvirtd.uri, "--domain", name).stdout
    assert [line for line in text.splitlines() if line.startswith("  note: ")] == [
        f"  note: {note}" for note in planned["notes"]
    ]

    proc = run_cli(
        "fix",
        "-c",
        libvirtd.uri,
        "--state-dir",
        str(tmp_path / "state"),
        "--domain",
        name,
        "--apply",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr

    dom = tree.dom
    for snap, state in tree.states.items():
        xml = dom.snapshotLookupByName(snap).getXMLDesc()
        image = disk_sources(xml, "domain")["vda"]
        assert Path(image) not in originals, snap
        assert read_back(image, state["vda"]) == [], snap
    top = disk_sources(dom.XMLDesc())["vda"]
    assert read_back(top, tree.now["vda"]) == []
    assert {p: sha256(p) for p in originals} == originals  # never written
    assert findings(libvirtd.uri, name) == []

    caps = conn.getCapabilities()
    require("<externalSnapshot/>" in caps, "this libvirt cannot revert to external snapshots")
    # Each once (libvirt names revert overlays by the second), a leaf last: libvirt deletes
    # an external snapshot it is on only when it is a leaf.
    leaves = {s.getName() for s in dom.listAllSnapshots(libvirt.VIR_DOMAIN_SNAPSHOT_LIST_LEAVES)}
    for snap in sorted(tree.states, key=lambda n: (n in leaves, n)):
        dom.revertToSnapshot(dom.snapshotLookupByName(snap))
        now = disk_sources(dom.XMLDesc())["vda"]
        assert read_back(now, tree.states[snap]["vda"]) == [], snap
    last = dom.snapshotCurrent().getName()
    assert [
        f for f in findings(libvirtd.uri, name) if f[0] in ("SNAP001", "SNAP002", "SNAP017")
    ] == []

    # Then delete every snapshot, leaves first (libvirt merges each one's overlay): what is
    # left, and the disk, keep their content after each deletion.
    while snaps := dom.listAllSnapshots(libvirt.VIR_DOMAIN_SNAPSHOT_LIST_LEAVES):
        snaps[0].delete(0)
        for snap in dom.listAllSnapshots():
            image = disk_sources(snap.getXMLDesc(), "domain")["vda"]
            assert read_back(image, tree.states[snap.getName()]["vda"]) == [], snap.getName()
        now = disk_sources(dom.XMLDesc())["vda"]
        assert read_back(now, tree.states[last]["vda"]) == []
    assert dom.listAllSnapshots() == []


def test_deleting_an_external_snapshot_after_a_revert_leaves_an_orphan(conn, libvirtd, tmp_path):
    """int1 -> ext1, revert to int1, delete ext1: libvirt 11.3 deletes the metadata and leaves
    ext1's overlay on disk; the audit names it (SNAP018) until it is removed."""
    images = tmp_path / "images"
    tree = SnapshotTree(conn, "orphaned", images)
    tree.write("vda", 0, 0x11)
    tree.snapshot("int1")
    external(tree, "ext1", images)
    overlay = tree.images["vda"]
    tree.write("vda", 1, 0x22)
    revert(tree, "int1")
    assert findings(libvirtd.uri, "orphaned") == [
        ("SNAP002", "int1"),
        ("SNAP017", "int1"),
    ]
    tree.dom.snapshotLookupByName("ext1").delete(0)
    assert overlay.exists()

    scan = run_cli("scan", "-c", libvirtd.uri, "--format", "json", "--fail-on", "never")
    rows = [f for f in json.loads(scan.stdout)["findings"] if f["domain"] == "orphaned"]
    (orphan,) = [f for f in rows if f["rule"] == "SNAP018"]
    base = tree.images["vda"]
    size = overlay.stat().st_size
    assert (orphan["image"], orphan["severity"], orphan["disk"]) == (str(overlay), "warning", None)
    assert orphan["message"] == (
        f"image {overlay} ({human_size(size)}) is used by no domain; its backing chain "
        f"reaches {base}"
    )
    assert sorted((f["rule"], f["snapshot"]) for f in rows) == [
        ("SNAP002", "int1"),
        ("SNAP018", str(overlay)),
    ]
    overlay.unlink()
    assert findings(libvirtd.uri, "orphaned") == [("SNAP002", "int1")]


def test_rollback_of_a_mixed_tree_restores_everything(conn, libvirtd, tmp_path):
    images = tmp_path / "images"
    tree = SnapshotTree(conn, "mixed-rollback", images)
    sandwich(tree, images)
    before = tree.metadata()
    originals = {p: sha256(p) for p in images.iterdir()}
    state = tmp_path / "state"
    args = ("fix", "-c", libvirtd.uri, "--state-dir", str(state), "--domain", "mixed-rollback")
    assert run_cli(*args, "--apply").returncode == 0
    (journal,) = state.glob("*.journal")
    proc = run_cli("fix", "--rollback", str(journal))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert tree.metadata() == before
    assert {p: sha256(p) for p in images.iterdir()} == originals


def test_remove_originals_removes_superseded_images_but_not_a_shared_one(conn, libvirtd, tmp_path):
    """int1 -> ext1, and another domain runs on a linked clone of the base image: ext1's
    overlay goes, once everything is verified; the base stays."""
    images = tmp_path / "images"
    tree = SnapshotTree(conn, "mixed-remove", images)
    after_external(tree, images)
    base, overlay = images / "mixed-remove-0.qcow2", tree.images["vda"]
    clone = create_qcow2(images / "clone.qcow2", "8M", backing=base)
    define_vm(conn, "clone-of-mixed", [clone])
    state = tmp_path / "state"
    args = ("fix", "-c", libvirtd.uri, "--state-dir", str(state), "--domain", "mixed-remove")
    plan = json.loads(run_cli(*args, "--remove-originals", "--format", "json").stdout)
    (domain,) = plan["domains"]
    assert sorted(o["path"] for o in domain["originals"]) == sorted([str(base), str(overlay)])
    removals = [s["path"] for s in domain["steps"] if s["kind"] == "remove-original"]
    assert removals == [str(overlay)]  # the base is the clone's backing file
    kinds = [s["kind"] for s in domain["steps"]]
    assert kinds.index("remove-original") > max(
        i for i, k in enumerate(kinds) if k in ("verify-image", "define-domain")
    )

    proc = run_cli(*args, "--remove-originals", "--apply")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert base.exists() and not overlay.exists()
    for snap, states in tree.states.items():
        image = disk_sources(tree.dom.snapshotLookupByName(snap).getXMLDesc(), "domain")["vda"]
        assert read_back(image, states["vda"]) == [], snap
    assert read_back(disk_sources(tree.dom.XMLDesc())["vda"], tree.now["vda"]) == []


# sandwich(): 4 images (int1, ext1, int2, now) created and verified, 3 snapshots dropped and
# redefined, the domain defined.
MIXED_STEPS = 15


def crash_scenario(uri: str, root: Path, k: int, mode: str) -> list[str]:
    """Kill the conversion of a mixed tree at step K, then recover per MODE (as in
    test_fix_crash); what went wrong, if anything."""
    conn = libvirt.open(uri)
    try:
        images, state = root / "images", root / "state"
        tree = SnapshotTree(conn, root.name, images)
        sandwich(tree, images)
        before = tree.metadata()
        originals = {p: sha256(p) for p in images.iterdir()}
        how, problems = kill_then_recover(uri, root.name, state, k, mode)
        if not how:
            return problems
        if how == "--resume":
            problems += resumed_problems(tree, images)
        else:
            problems += rolled_back_problems(tree, before, sorted(originals), images)
        if {p: sha256(p) for p in originals} != originals:
            problems.append("an original image was written")
        return problems
    finally:
        conn.close()


def test_mixed_plan_has_the_steps_the_crash_test_covers(conn, libvirtd, tmp_path):
    tree = SnapshotTree(conn, "mixed-plan", tmp_path / "images")
    sandwich(tree, tmp_path / "images")
    proc = run_cli("fix", "-c", libvirtd.uri, "--domain", "mixed-plan", "--format", "json")
    (plan,) = json.loads(proc.stdout)["domains"]
    assert [(s["kind"], s.get("snapshot"), s.get("tag")) for s in plan["steps"]] == [
        ("create-image", "int1", "int1"),
        ("verify-image", "int1", "int1"),
        ("create-image", "ext1", None),  # the image ext1's overlay was made on, as it is
        ("verify-image", "ext1", None),
        ("create-image", "int2", "int2"),  # inside ext1's overlay, over its backing image
        ("verify-image", "int2", "int2"),
        ("create-image", None, None),
        ("verify-image", None, None),
        *[("drop-snapshot-metadata", s, None) for s in ("int2", "ext1", "int1")],
        *[("redefine-snapshot", s, None) for s in ("int1", "ext1", "int2")],
        ("define-domain", None, None),
    ]
    assert len(plan["steps"]) == MIXED_STEPS


def test_kill_at_every_step_of_a_mixed_tree(conn, libvirtd, tmp_path):
    modes = ("journaled-resume", "unjournaled-resume", "unjournaled-rollback")
    cases = [(k, mode) for k in range(1, MIXED_STEPS + 1) for mode in modes]
    with ThreadPoolExecutor(4) as pool:
        results = pool.map(
            lambda case: crash_scenario(libvirtd.uri, tmp_path / f"m-{case[1]}-{case[0]}", *case),
            cases,
        )
        problems = {f"step {k} {mode}": p for (k, mode), p in zip(cases, results, strict=True) if p}
    assert problems == {}
