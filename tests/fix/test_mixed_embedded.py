"""Mixed trees on the embedded QEMU driver, converted in-process through the same gather,
plan and journaled execution the fix command runs; and an external snapshot with memory
(`--memspec`) keeps its memory file through the conversion."""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime
from pathlib import Path

import libvirt
import pytest

from auditor.engine.audit import audit
from auditor.engine.registry import load_rules
from auditor.fix.execute import run
from auditor.fix.gather import read_domain
from auditor.fix.journal import Journal
from auditor.fix.plan import Options
from auditor.fix.planner import plan_domain
from auditor.reports.fixplan import describe
from auditor.sources.live.scanner import scan_host
from testlab.trees import SnapshotTree, disk_sources, read_back, removed_afterwards
from testlab.vms import snapshot_external_live_memspec
from tests.fix.mixed_trees import SHAPES

pytestmark = pytest.mark.qemu


def findings(conn: libvirt.virConnect, domain: str) -> list[tuple[str, str]]:
    now = datetime.fromtimestamp(int(time.time()), tz=UTC)
    result = audit([scan_host(conn.getURI())], load_rules()[0], now=now)
    return sorted((f.rule, f.snapshot_label) for f in result.findings if f.domain == domain)


def convert(conn: libvirt.virConnect, dom: libvirt.virDomain, state: Path) -> list[str]:
    facts = read_domain(conn, dom, host=conn.getURI(), target_dir=None)
    plan = plan_domain(facts, Options())
    assert plan.status == "ready", plan.refusals
    state.mkdir(parents=True, exist_ok=True)
    journal = Journal.create(state / f"{dom.name()}.journal", conn.getURI(), plan)
    progress: list[str] = []
    run(conn, journal, progress.append, describe)
    return progress


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("shape", SHAPES)
def test_mixed_tree_converts_on_the_embedded_driver(embedded_qemu, tmp_path, shape):
    conn = embedded_qemu
    build, internal, unnamed_overlay = SHAPES[shape]
    images, name = tmp_path / "images", f"embedded-{shape}"
    with removed_afterwards(conn):
        tree = SnapshotTree(conn, name, images)
        build(tree, images)
        expected = [("SNAP002", s) for s in internal] + [("SNAP017", "int1")]
        if unnamed_overlay:
            expected.append(("SNAP012", str(tree.images["vda"])))
        assert findings(conn, name) == sorted(expected)
        originals = {p: sha256(p) for p in images.iterdir()}

        convert(conn, tree.dom, tmp_path / "state")
        for snap, states in tree.states.items():
            xml = tree.dom.snapshotLookupByName(snap).getXMLDesc()
            assert read_back(disk_sources(xml, "domain")["vda"], states["vda"]) == [], snap
        assert read_back(disk_sources(tree.dom.XMLDesc())["vda"], tree.now["vda"]) == []
        assert {p: sha256(p) for p in originals} == originals
        assert findings(conn, name) == []


def test_an_external_snapshot_keeps_its_memory_file(embedded_qemu, tmp_path):
    """int1 (shut off), then a live external snapshot with memory (--memspec): after the
    conversion the snapshot still names its memory file, unchanged, and reverting to it
    restores the running guest from it."""
    conn = embedded_qemu
    images = tmp_path / "images"
    with removed_afterwards(conn):
        tree = SnapshotTree(conn, "embedded-memspec", images)
        tree.write("vda", 0, 0x11)
        tree.snapshot("int1")
        tree.write("vda", 1, 0x22)
        memory = images / "live.mem"
        tree.dom.create()
        try:
            snapshot_external_live_memspec(tree.dom, "live", memory, images)
        finally:
            tree.dom.destroy()
        tree.states["live"] = {disk: list(blocks) for disk, blocks in tree.now.items()}
        tree.images["vda"] = Path(disk_sources(tree.dom.XMLDesc())["vda"])
        memory_sha = sha256(memory)

        convert(conn, tree.dom, tmp_path / "state")
        xml = tree.dom.snapshotLookupByName("live").getXMLDesc()
        assert f"<memory snapshot='external' file='{memory}'/>" in xml
        assert "<state>running</state>" in xml
        assert sha256(memory) == memory_sha
        for snap, states in tree.states.items():
            xml = tree.dom.snapshotLookupByName(snap).getXMLDesc()
            assert read_back(disk_sources(xml, "domain")["vda"], states["vda"]) == [], snap

        tree.dom.revertToSnapshot(tree.dom.snapshotLookupByName("live"))
        try:
            assert tree.dom.isActive()  # the guest runs again, from the memory file
        finally:
            tree.dom.destroy()
        assert read_back(disk_sources(tree.dom.XMLDesc())["vda"], tree.states["live"]["vda"]) == []
