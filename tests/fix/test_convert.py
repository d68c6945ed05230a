"""`snapaudit fix --apply` on real QEMU images through a real libvirtd: every state of every
disk reads back exactly, the metadata is libvirt's own external layout, and libvirt can revert
to each converted snapshot and start the VM."""

from __future__ import annotations

import hashlib
import json
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt
import pytest

from auditor.fix.names import image_name
from testlab.pytest_fixtures import require
from testlab.trees import SECURE_DOMAIN, MiB, SnapshotTree, disk_sources, read_back
from tests.helpers import run_cli

pytestmark = pytest.mark.qemu

IMG = "<img src=x onerror=alert(1)>"
ODD = 'with, comma "quotes" & ünïcode'


def web_tree(conn: libvirt.virConnect, name: str, directory: Path) -> SnapshotTree:
    """base ─┬─ IMG ── ODD         (a branch left behind by a revert)
             └─ branch (current) ── the disk now
    on a 64 MiB disk; IMG changes exactly 1 MiB from base."""
    tree = SnapshotTree(conn, name, directory, size_mib=64)
    tree.write("vda", 0, 0xA1, 8)
    tree.snapshot("base", description="before the upgrade\n<b>keep me</b>")
    tree.write("vda", 8, 0xB2)
    tree.snapshot(IMG)
    tree.write("vda", 9, 0xC3)
    tree.write("vda", 0, 0xC4)
    tree.snapshot(ODD)
    tree.revert("base")
    tree.write("vda", 10, 0xD5)
    tree.snapshot("branch")
    tree.write("vda", 11, 0xE6)
    return tree


def fix(uri: str, state: Path, *args: str):
    return run_cli("fix", "-c", uri, "--state-dir", str(state), *args)


def available(directory: Path) -> int:
    stat = os.statvfs(directory)
    return stat.f_bavail * stat.f_frsize


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def state_image(dom: libvirt.virDomain, snapshot: str, disk: str = "vda") -> str:
    return disk_sources(dom.snapshotLookupByName(snapshot).getXMLDesc(), "domain")[disk]


def test_tree_converts_losing_nothing(conn, libvirtd, tmp_path):
    tree = web_tree(conn, "web", tmp_path / "images")
    original = tree.images["vda"]
    before_sha = sha256(original)
    _, before_snaps, _ = tree.metadata()
    dry = fix(libvirtd.uri, tmp_path / "state", "--domain", "web", "--format", "json")
    assert dry.returncode == 0, dry.stderr
    (planned,) = json.loads(dry.stdout)["domains"]
    estimates = {i["path"]: i["estimated_bytes"] for i in planned["images"]}
    assert tree.metadata()[1] == before_snaps  # a dry run changes nothing

    proc = fix(libvirtd.uri, tmp_path / "state", "--domain", "web", "--apply")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (journal,) = (tmp_path / "state").glob("web.*.journal")
    assert f"snapaudit: domain 'web': journal {journal}\n" in proc.stderr
    assert proc.stdout.endswith(f"  converted; journal {journal}\n\n1 domain: 1 converted\n")

    # Every state reads back exactly, every byte of the 64 MiB, from images libvirt names.
    dom = tree.dom
    for name, state in tree.states.items():
        image = state_image(dom, name)
        assert Path(image).parent == original.parent
        assert read_back(image, state["vda"]) == [], name
    top = disk_sources(dom.XMLDesc())["vda"]
    assert read_back(top, tree.now["vda"]) == []
    assert sha256(original) == before_sha  # the original was only ever read

    # Only what differs is stored: IMG changed 1 MiB of 64 MiB from base. Every image is
    # within the size the plan announced.
    assert Path(state_image(dom, IMG)).stat().st_size < 2 * MiB
    assert len(estimates) == 6  # 4 snapshots, the disk now, the empty overlay after ODD
    for path, estimate in estimates.items():
        assert Path(path).stat().st_size <= estimate, path
    assert Path(state_image(dom, "base")).stat().st_size < 9 * MiB  # 8 MiB of data

    # The metadata keeps names, tree, times, descriptions and the current snapshot.
    after_xml, after_snaps, current = tree.metadata()
    assert current == "branch"
    assert after_snaps.keys() == before_snaps.keys()
    for name, xml in after_snaps.items():
        old, new = ET.fromstring(before_snaps[name]), ET.fromstring(xml)
        for field in ("name", "description", "state", "parent/name", "creationTime"):
            assert new.findtext(field) == old.findtext(field), (name, field)
        assert new.find("memory").attrib == {"snapshot": "no"}
        (disk,) = new.iterfind("disks/disk")
        assert disk.get("snapshot") == "external"
        assert disk.find("driver").get("type") == "qcow2"
    overlay = {
        n: ET.fromstring(x).find("disks/disk/source").get("file") for n, x in after_snaps.items()
    }
    # libvirt's layout: a snapshot's overlay holds its child's state (the child on the
    # current branch first); the current snapshot's overlay is the domain's top image.
    assert overlay["base"] == state_image(dom, "branch")
    assert overlay[IMG] == state_image(dom, ODD)
    assert overlay["branch"] == top
    assert overlay[ODD] == state_image(dom, ODD).removesuffix(".qcow2") + ".after.qcow2"
    assert read_back(overlay[ODD], tree.states[ODD]["vda"]) == []  # empty, on ODD's state
    assert ET.fromstring(after_xml).find("devices/disk/driver").get("type") == "qcow2"

    # The audit finds nothing internal any more, and nothing broken.
    scan = run_cli("scan", "-c", libvirtd.uri, "--format", "json", "--fail-on", "never")
    findings = [f for f in json.loads(scan.stdout)["findings"] if f["domain"] == "web"]
    assert [f for f in findings if f["rule"] in ("SNAP001", "SNAP002")] == []
    assert [f for f in findings if f["severity"] == "error"] == []

    # Idempotent: a second run finds nothing to convert.
    again = fix(libvirtd.uri, tmp_path / "state", "--domain", "web", "--apply")
    assert again.returncode == 0, again.stderr
    assert again.stdout.endswith(
        "\ndomain 'web': nothing to convert (no internal snapshots)\n\n1 domain: 1 nothing to do\n"
    )
    assert len(list((tmp_path / "state").glob("*.journal"))) == 1


def test_revert_to_each_converted_snapshot(conn, libvirtd, tmp_path):
    caps = ET.fromstring(conn.getCapabilities())
    require(
        caps.find("guest/features/externalSnapshot") is not None,
        "this libvirt cannot revert to external snapshots (<externalSnapshot/> missing)",
    )
    tree = web_tree(conn, "web-revert", tmp_path / "images")
    proc = fix(libvirtd.uri, tmp_path / "state", "--domain", "web-revert", "--apply")
    assert proc.returncode == 0, proc.stdout + proc.stderr

    dom = tree.dom
    for name in (IMG, "base", ODD, "branch"):  # each once: libvirt names overlays by second
        dom.revertToSnapshot(dom.snapshotLookupByName(name))
        now = disk_sources(dom.XMLDesc())["vda"]
        assert read_back(now, tree.states[name]["vda"]) == [], name
        assert dom.snapshotCurrent().getName() == name
        dom.create()
        try:
            assert dom.isActive()
        finally:
            dom.destroy()


def test_rollback_restores_the_exact_metadata(conn, libvirtd, tmp_path):
    tree = web_tree(conn, "web-rollback", tmp_path / "images")
    before = tree.metadata()
    before_files = sorted(p.name for p in (tmp_path / "images").iterdir())
    state = tmp_path / "state"
    assert fix(libvirtd.uri, state, "--domain", "web-rollback", "--apply").returncode == 0
    assert tree.metadata() != before
    (journal,) = state.glob("*.journal")

    proc = run_cli("fix", "--rollback", str(journal))
    assert (proc.returncode, proc.stdout) == (
        0,
        f"domain 'web-rollback': rolled back; journal {journal}\n",
    ), proc.stderr
    assert tree.metadata() == before  # domain XML, every snapshot's XML, the current one
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == before_files
    for name, states in tree.states.items():  # the internal snapshots are whole again
        assert read_back(tree.images["vda"], states["vda"], snapshot=name) == [], name
    assert read_back(tree.images["vda"], tree.now["vda"]) == []

    again = run_cli("fix", "--rollback", str(journal))
    assert again.returncode == 0
    resume = run_cli("fix", "--resume", str(journal))
    assert resume.returncode == 3
    assert "was rolled back; plan a new fix instead" in resume.stdout


def test_rollback_refuses_to_lose_writes_made_after_the_conversion(conn, libvirtd, tmp_path):
    tree = SnapshotTree(conn, "written", tmp_path / "images")
    tree.write("vda", 0, 0x11)
    tree.snapshot("one")
    state = tmp_path / "state"
    assert fix(libvirtd.uri, state, "--domain", "written", "--apply").returncode == 0
    top = disk_sources(tree.dom.XMLDesc())["vda"]
    tree.images["vda"] = Path(top)
    tree.write("vda", 1, 0x22)  # the guest wrote after the conversion
    before = tree.metadata()
    (journal,) = state.glob("*.journal")

    proc = run_cli("fix", "--rollback", str(journal))
    assert proc.returncode == 3
    assert proc.stdout == (
        f"domain 'written': FAILED: disk vda: the guest wrote to the converted image {top} "
        "after the conversion; rolling back would lose that: the conversion is complete\n"
    )
    assert tree.metadata() == before


def test_rollback_after_a_revert_names_what_to_do(conn, libvirtd, tmp_path):
    tree = SnapshotTree(conn, "reverted", tmp_path / "images")
    tree.write("vda", 0, 0x51)
    tree.snapshot("one")
    original = str(tree.images["vda"])
    before = tree.metadata()
    state = tmp_path / "state"
    assert fix(libvirtd.uri, state, "--domain", "reverted", "--apply").returncode == 0
    (journal,) = state.glob("*.journal")
    tree.revert("one")  # libvirt puts the disk on a new overlay of the converted snapshot
    now = disk_sources(tree.dom.XMLDesc())["vda"]
    reverted = tree.metadata()

    proc = run_cli("fix", "--rollback", str(journal))
    assert (proc.returncode, proc.stdout) == (
        3,
        f"domain 'reverted': FAILED: disk vda now uses {now}, neither its original image "
        f"{original} nor the converted one: the domain changed after the conversion (a "
        "revert?), not rolling back; to roll back anyway, put disk vda back on "
        f"{original} (virsh edit reverted), then run snapaudit fix --rollback {journal}\n",
    )
    assert tree.metadata() == reverted

    conn.defineXML(tree.dom.XMLDesc(SECURE_DOMAIN).replace(now, original))  # as told
    proc = run_cli("fix", "--rollback", str(journal))
    assert (proc.returncode, proc.stdout) == (
        0,
        f"domain 'reverted': rolled back; journal {journal}\n",
    ), proc.stderr
    assert tree.metadata() == before
    assert read_back(tree.images["vda"], tree.now["vda"]) == []
    assert read_back(tree.images["vda"], tree.states["one"]["vda"], snapshot="one") == []


def test_remove_originals(conn, libvirtd, tmp_path):
    tree = SnapshotTree(conn, "removed", tmp_path / "images")
    tree.write("vda", 0, 0x31)
    tree.snapshot("one")
    tree.write("vda", 1, 0x32)
    original = tree.images["vda"]
    state = tmp_path / "state"
    proc = fix(libvirtd.uri, state, "--domain", "removed", "--apply", "--remove-originals")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"  originals removed once all is done: {original}\n" in proc.stdout
    assert not original.exists()
    assert read_back(state_image(tree.dom, "one"), tree.states["one"]["vda"]) == []
    assert read_back(disk_sources(tree.dom.XMLDesc())["vda"], tree.now["vda"]) == []

    (journal,) = state.glob("*.journal")
    proc = run_cli("fix", "--rollback", str(journal))
    assert (proc.returncode, proc.stdout) == (
        3,
        f"domain 'removed': FAILED: original image {original} was removed "
        "(--remove-originals): there is nothing to roll back to\n",
    )


def test_drop_memory_keeps_the_disks_as_a_disk_only_snapshot(conn, libvirtd, tmp_path):
    tree = SnapshotTree(conn, "live", tmp_path / "images")
    tree.write("vda", 0, 0x41, 2)
    tree.snapshot_live("running")
    tree.write("vda", 2, 0x42)
    tree.snapshot("after")
    tree.write("vda", 3, 0x43)
    state = tmp_path / "state"

    refused = fix(libvirtd.uri, state, "--domain", "live", "--apply")
    assert refused.returncode == 1
    assert (
        "domain 'live': refused\n"
        "  - snapshot 'running' holds the guest's memory (internal): add --drop-memory to keep "
        "only its disks, as a crash-consistent disk-only snapshot\n"
    ) in refused.stdout
    assert not list(state.glob("*.journal"))

    proc = fix(libvirtd.uri, state, "--domain", "live", "--apply", "--drop-memory")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    xml = ET.fromstring(tree.dom.snapshotLookupByName("running").getXMLDesc())
    assert xml.findtext("state") == "disk-snapshot"
    assert xml.find("memory").attrib == {"snapshot": "no"}
    assert xml.findtext("description") == (
        "snapaudit fix dropped this snapshot's memory state (the guest was running); its "
        "disks are kept as a crash-consistent disk-only snapshot."
    )
    for name, states in tree.states.items():
        assert read_back(state_image(tree.dom, name), states["vda"]) == [], name
    assert read_back(disk_sources(tree.dom.XMLDesc())["vda"], tree.now["vda"]) == []

    caps = ET.fromstring(conn.getCapabilities())
    require(caps.find("guest/features/externalSnapshot") is not None, "no external revert")
    tree.dom.revertToSnapshot(tree.dom.snapshotLookupByName("running"))
    assert read_back(disk_sources(tree.dom.XMLDesc())["vda"], tree.states["running"]["vda"]) == []
    tree.dom.create()
    try:
        assert tree.dom.isActive()
    finally:
        tree.dom.destroy()


def test_two_domains_one_with_two_qcow2_disks(conn, libvirtd, tmp_path):
    multi = SnapshotTree(conn, "multi", tmp_path / "images", disks=2, excluded_raw=True)
    multi.write("vda", 0, 0x51)
    multi.write("vdb", 0, 0x61, 2)
    multi.snapshot("first")
    multi.write("vda", 1, 0x52)
    multi.write("vdb", 2, 0x62)
    multi.snapshot("second")
    multi.write("vdb", 3, 0x63)
    single = SnapshotTree(conn, "single", tmp_path / "images")
    single.write("vda", 0, 0x71)
    single.snapshot("only")
    single.write("vda", 0, 0x72)
    untouched = SnapshotTree(conn, "no-snapshots", tmp_path / "images")
    untouched_xml = untouched.metadata()
    raw_sha = sha256(multi.excluded)
    target = tmp_path / "converted"
    target.mkdir()

    # Without --domain, every domain with internal snapshots is planned (this libvirtd may
    # hold other tests' domains too: only a dry run here).
    plan = fix(libvirtd.uri, tmp_path / "state", "--format", "json")
    planned = {d["domain"]: d["status"] for d in json.loads(plan.stdout)["domains"]}
    assert planned["multi"] == planned["single"] == "ready"
    assert "no-snapshots" not in planned

    domains = ("--domain", "multi", "--domain", "single")
    proc = fix(libvirtd.uri, tmp_path / "state", *domains, "--apply", "--target-dir", str(target))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.endswith("\n2 domains: 2 converted\n")
    assert "domain 'multi': convert 2 snapshots on vda, vdb\n" in proc.stdout

    for tree in (multi, single):
        for name, states in tree.states.items():
            for disk, blocks in states.items():
                image = state_image(tree.dom, name, disk)
                assert Path(image).parent == target
                assert read_back(image, blocks) == [], (tree.dom.name(), name, disk)
        now = disk_sources(tree.dom.XMLDesc())
        for disk, blocks in tree.now.items():
            assert read_back(now[disk], blocks) == []
    # The raw disk no snapshot captures is neither moved nor touched.
    assert disk_sources(multi.dom.XMLDesc())["vdc"] == str(multi.excluded)
    assert sha256(multi.excluded) == raw_sha
    second = ET.fromstring(multi.dom.snapshotLookupByName("second").getXMLDesc())
    assert {d.get("name"): d.get("snapshot") for d in second.iterfind("disks/disk")} == {
        "vda": "external",
        "vdb": "external",
        "vdc": "no",
    }
    assert untouched.metadata() == untouched_xml


def test_dry_run_plan_text(conn, libvirtd, tmp_path):
    images = tmp_path / "images"
    tree = SnapshotTree(conn, "plan-text", images)
    tree.write("vda", 0, 0x11)
    tree.snapshot("one")
    tree.write("vda", 1, 0x22)
    tree.snapshot("two")
    tree.write("vda", 2, 0x33)
    before = tree.metadata()

    free_before = available(images)
    proc = fix(libvirtd.uri, tmp_path / "state", "--domain", "plan-text")
    free_after = available(images)
    assert (proc.returncode, proc.stderr) == (0, "")
    # The free space the plan shows is statvfs's f_bavail when it ran. The file system is
    # shared with other processes, so the figure is checked against statvfs taken just before
    # and just after the run, give or take the rounding of its one decimal and 64 MiB that
    # others may have written or freed meanwhile.
    free = re.search(
        r"^  free space in .*: 3\.9 MiB needed, (\d+\.\d) (KiB|MiB|GiB|TiB) available$",
        proc.stdout,
        re.MULTILINE,
    )
    assert free is not None, proc.stdout
    unit = 1024 ** (("KiB", "MiB", "GiB", "TiB").index(free[2]) + 1)
    tolerance = unit // 20 + 64 * MiB
    shown = float(free[1]) * unit
    assert min(free_before, free_after) - tolerance <= shown
    assert shown <= max(free_before, free_after) + tolerance
    uuid, source = tree.dom.UUIDString(), str(tree.images["vda"])
    one, two, now = (
        str(images / image_name("plan-text", uuid, "vda", snap, source))
        for snap in ("one", "two", None)
    )
    assert proc.stdout == (
        f"snapaudit fix on {libvirtd.uri} (dry run, nothing is changed: add --apply to convert)\n"
        "\n"
        "domain 'plan-text': convert 2 snapshots on vda\n"
        "  snapshots, parents first: 'one', 'two' (current)\n"
        "  new images (estimated size, at most):\n"
        f"    1.3 MiB  {one}  (disk vda at snapshot 'one': full image)\n"
        f"    1.3 MiB  {two}  (disk vda at snapshot 'two': what differs from its parent)\n"
        f"    1.3 MiB  {now}  (disk vda at its current state: what differs from its parent)\n"
        f"  free space in {images}: 3.9 MiB needed, {free[1]} {free[2]} available\n"
        f"  originals kept, never written: {source}\n"
        "  steps:\n"
        f"     1. qemu-img convert: disk vda at snapshot 'one' as a full image {one}\n"
        f"     2. qemu-img compare: {one} against snapshot 'one' of {source}\n"
        f"     3. qemu-nbd + qemu-img rebase: disk vda at snapshot 'two' as {two}, storing what "
        f"differs from {one}\n"
        f"     4. qemu-img compare: {two} against snapshot 'two' of {source}\n"
        f"     5. qemu-nbd + qemu-img rebase: disk vda at its current state as {now}, storing "
        f"what differs from {two}\n"
        f"     6. qemu-img compare: {now} against its current state of {source}\n"
        "     7. libvirt: drop the internal metadata of snapshot 'two'\n"
        "     8. libvirt: drop the internal metadata of snapshot 'one'\n"
        "     9. libvirt: redefine snapshot 'one' as external\n"
        "    10. libvirt: redefine snapshot 'two' as external, current\n"
        f"    11. libvirt: define the domain with vda on {now}\n"
        "\n"
        "1 domain: 1 to convert\n"
    )
    assert tree.metadata() == before
    assert sorted(p.name for p in images.iterdir()) == ["plan-text-0.qcow2"]
