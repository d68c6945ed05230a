"""Fix mode with a guest that writes through a running VM (testlab.guest: a boot sector that
writes to the data disk through the BIOS, then powers the VM off): what it writes lands
exactly, before a conversion, after one, and when it runs in the middle of one.
"""

from __future__ import annotations

import functools
import signal
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt
import pytest

from testlab import guest as bios_guest
from testlab.trees import SnapshotTree, disk_sources, read_back
from tests.fix.scenario import Scenario, small_tree, wait_stopped

pytestmark = pytest.mark.qemu
BOOT_BLANK = bytes(1024 * 1024)  # the boot disk between guest writes (nothing to boot)


def guest_scenario(uri: str, root: Path) -> Scenario:
    """A Scenario (test_fix_faults) whose domain has the guest."""
    return Scenario(uri, root, make_tree=functools.partial(small_tree, guest=True))


def boot_disk(dom: libvirt.virDomain, boot: Path) -> list[tuple[str, bool]]:
    """The boot disk as the domain defines it: (format, read-only)."""
    return [
        (d.find("driver").get("type"), d.find("readonly") is not None)
        for d in ET.fromstring(dom.XMLDesc()).iterfind("devices/disk")
        if d.find("source").get("file") == str(boot.resolve())
    ]


def next_second() -> None:
    """Wait for the clock's next second. Reverting to an external snapshot, libvirt names
    each new overlay after its disk's image and the time in seconds: a second revert within
    the same second finds that name taken and fails. (It also puts such an overlay on the
    read-only raw boot disk, which the snapshot leaves out.)"""
    time.sleep(1 - time.time() % 1)


def test_the_guest_writes_exactly_where_it_is_told(conn, libvirtd, tmp_path):
    tree = SnapshotTree(conn, "guest-writes", tmp_path, disks=2, guest=True)
    tree.write("vda", 0, 0x11, 8)
    tree.write("vdb", 0, 0x12, 8)
    tree.snapshot("s1")
    tree.guest_write("vda", 2, 0xAB, 3)  # the BIOS's drive 81
    tree.guest_write("vdb", 7, 0xCD)  # drive 82, the last MiB of the disk
    assert tree.now == {
        "vda": [0x11, 0x11, 0xAB, 0xAB, 0xAB, 0x11, 0x11, 0x11],
        "vdb": [0x12] * 7 + [0xCD],
    }
    for disk, image in tree.images.items():
        assert read_back(image, tree.now[disk]) == []
        assert read_back(image, tree.states["s1"][disk], snapshot="s1") == []
    assert tree.boot.read_bytes() == BOOT_BLANK
    assert tree.serial_log.read_text() == "boot drive 80: done\n"


def test_a_converted_domain_runs_the_guest_on_its_new_images(conn, libvirtd, tmp_path):
    scenario = guest_scenario(libvirtd.uri, tmp_path / "converted")
    tree = scenario.tree
    try:
        proc = scenario.apply({})
        out, err = proc.communicate(timeout=120)
        assert (proc.returncode, out.splitlines()[-1]) == (0, "1 domain: 1 converted"), out + err
        assert tree.boot.name not in out + err  # no step touches the boot disk
        assert scenario.check("--resume") == []  # every state exact, the original gone
        top = disk_sources(tree.dom.XMLDesc())["vda"]
        assert top != str(scenario.original)
        # The boot disk is where it was, and the snapshots leave it out.
        assert boot_disk(tree.dom, tree.boot) == [("raw", True)]
        for name in tree.states:
            snapshot = ET.fromstring(tree.dom.snapshotLookupByName(name).getXMLDesc())
            modes = {d.get("name"): d.get("snapshot") for d in snapshot.iterfind("disks/disk")}
            assert modes == {"vda": "external", "vdb": "no"}
        tree.guest_write("vda", 6, 0x66)
        assert read_back(top, tree.now["vda"]) == []
        assert disk_sources(tree.dom.XMLDesc())["vda"] == top
        for name, states in tree.states.items():
            next_second()
            tree.revert(name)
            reverted = disk_sources(tree.dom.XMLDesc())["vda"]
            assert read_back(reverted, states["vda"]) == [], name
        assert not scenario.original.exists()
        assert tree.boot.read_bytes() == BOOT_BLANK
    finally:
        scenario.close()


@pytest.mark.parametrize("where", ["3", "9+", "13+"])  # an image made; all verified; metadata
def test_a_guest_run_during_a_conversion_keeps_every_byte(conn, libvirtd, tmp_path, where):
    scenario = guest_scenario(libvirtd.uri, tmp_path / f"during-{where.replace('+', 'p')}")
    tree = scenario.tree
    try:
        proc = scenario.apply({"SNAPAUDIT_FIX_FAULT_AT": where, "SNAPAUDIT_FIX_FAULT": "stop"})
        assert wait_stopped(proc)
        try:
            with pytest.raises(libvirt.libvirtError, match='Failed to get "write" lock'):
                tree.dom.create()
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
        assert scenario.defined_on_original()
        tree.guest_write("vda", 5, 0x55)
        assert read_back(scenario.original, tree.now["vda"]) == []
        finished = scenario.recover("--resume" if where.endswith("+") else "--rollback")
        assert (finished, scenario.check(finished)) == ("--rollback", [])
        top = disk_sources(tree.dom.XMLDesc())["vda"]
        assert read_back(top, tree.now["vda"]) == []
        assert tree.boot.read_bytes() == BOOT_BLANK
    finally:
        scenario.close()


def test_a_write_the_bios_refuses_is_reported_and_the_guest_still_powers_off(
    conn,
    libvirtd,
    tmp_path,
):
    tree = SnapshotTree(conn, "guest-fails", tmp_path, guest=True)
    tree.write("vda", 0, 0x11, 8)
    # Drive 82 does not exist: only the boot disk (80) and vda (81) are hard disks.
    bios_guest.arm(tree.boot, bios_guest.boot_sector(drive=0x82, pattern=0xEE, mib=0))
    assert bios_guest.run(tree.dom, tree.serial_log) == "boot drive 80: write failed, status 01\n"
    bios_guest.disarm(tree.boot)
    with pytest.raises(RuntimeError, match="the guest reported 'boot drive 80: write failed"):
        tree.guest_write("vda", 8, 0xEE)  # past the end of the 8 MiB disk
    assert tree.now["vda"] == [0x11] * 8
    assert read_back(tree.images["vda"], tree.now["vda"]) == []
