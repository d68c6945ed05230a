"""The test lab against the real hypervisor: a private libvirtd, the embedded driver, images."""

import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt
import pytest

from testlab.daemon import LibvirtDaemon
from testlab.images import (
    backing_chain,
    check_pattern,
    create_qcow2,
    create_raw,
    image_info,
    write_pattern,
)
from testlab.pytest_fixtures import require_libvirtd, require_qemu_tools
from testlab.vms import (
    define_vm,
    snapshot_disk_only,
    snapshot_external_live_memspec,
    snapshot_external_offline,
    snapshot_internal,
    snapshot_internal_live,
)

pytestmark = pytest.mark.qemu
MiB = 1024 * 1024


def disk_modes(snapshot: ET.Element) -> dict[str, str]:
    return {d.get("name"): d.get("snapshot") for d in snapshot.iterfind("disks/disk")}


def test_images_patterns_and_backing_chain(tmp_path: Path) -> None:
    require_qemu_tools()
    base = create_raw(tmp_path / "base.raw", "8M")
    write_pattern(base, 0xAA, 0, MiB)  # block 0 of a raw image: the format must be named
    overlay = create_qcow2(tmp_path / "top.qcow2", "8M", backing=base)
    write_pattern(overlay, 0xBB, MiB, MiB)

    assert check_pattern(overlay, 0xAA, 0, MiB)
    assert check_pattern(overlay, 0xBB, MiB, MiB)
    assert not check_pattern(base, 0xBB, MiB, MiB)
    assert [i["format"] for i in backing_chain(overlay)] == ["qcow2", "raw"]
    assert image_info(overlay)["backing-filename"] == str(base)


def test_private_libvirtd_read_only_sees_offline_snapshots(
    libvirtd: LibvirtDaemon,
    tmp_path: Path,
) -> None:
    conn = libvirt.open(libvirtd.uri)
    disk = create_qcow2(tmp_path / "vda.qcow2", "64M")
    write_pattern(disk, 0xAA, 0, MiB)
    dom = define_vm(conn, "offline", [disk])

    snapshot_internal(dom, "internal")
    write_pattern(disk, 0xBB, 0, MiB)
    snapshot_external_offline(dom, "external", tmp_path / "overlays")
    overlay = tmp_path / "overlays" / "offline.external.vda.qcow2"

    for uri in (libvirtd.uri, libvirtd.ro_uri):
        ro = libvirt.openReadOnly(uri)
        assert "offline" in [d.name() for d in ro.listAllDomains()]
        ro_dom = ro.lookupByName("offline")
        snaps = {s.getName(): ET.fromstring(s.getXMLDesc()) for s in ro_dom.listAllSnapshots()}
        assert snaps.keys() == {"internal", "external"}
        internal, external = snaps["internal"], snaps["external"]
        assert internal.findtext("state") == "shutoff"
        assert internal.find("memory").get("snapshot") == "no"
        assert disk_modes(internal) == {"vda": "internal"}
        assert external.find("memory").get("snapshot") == "no"
        assert disk_modes(external) == {"vda": "external"}
        assert external.find("disks/disk/source").get("file") == str(overlay)
        with pytest.raises(libvirt.libvirtError, match="read only"):
            ro_dom.create()
        ro.close()
    conn.close()

    # The data behind the metadata: the internal snapshot kept the old bytes.
    assert check_pattern(disk, 0xAA, 0, MiB, snapshot="internal")
    assert check_pattern(overlay, 0xBB, 0, MiB)
    assert image_info(overlay)["backing-filename"] == str(disk)


def test_embedded_live_snapshots(embedded_qemu: libvirt.virConnect, tmp_path: Path) -> None:
    disk = create_qcow2(tmp_path / "vda.qcow2", "64M")
    dom = define_vm(embedded_qemu, "live", [disk], guest_agent=True, running=True)
    try:
        assert "org.qemu.guest_agent.0" in dom.XMLDesc()
        with pytest.raises(ValueError, match="shut off"):
            snapshot_internal(dom, "wrong-state")

        live = ET.fromstring(snapshot_internal_live(dom, "live"))
        mem_file = tmp_path / "memspec.save"
        memspec = ET.fromstring(
            snapshot_external_live_memspec(dom, "memspec", mem_file, tmp_path / "overlays")
        )
        disk_only = ET.fromstring(snapshot_disk_only(dom, "disk-only", tmp_path / "overlays"))
    finally:
        dom.destroy()

    assert live.findtext("state") == "running"
    assert live.find("memory").get("snapshot") == "internal"
    assert disk_modes(live) == {"vda": "internal"}

    assert memspec.findtext("state") == "running"
    assert memspec.find("memory").attrib == {"snapshot": "external", "file": str(mem_file)}
    assert disk_modes(memspec) == {"vda": "external"}
    assert mem_file.stat().st_size > 0

    assert disk_only.findtext("state") == "disk-snapshot"
    assert disk_only.find("memory").get("snapshot") == "no"
    assert disk_modes(disk_only) == {"vda": "external"}

    top = tmp_path / "overlays" / "live.disk-only.vda.qcow2"
    chain = backing_chain(top)
    assert [Path(i["filename"]).name for i in chain] == [
        "live.disk-only.vda.qcow2",
        "live.memspec.vda.qcow2",
        "vda.qcow2",
    ]
    assert [s["name"] for s in chain[-1]["snapshots"]] == ["live"]


def test_stop_leaves_nothing_running(tmp_path: Path) -> None:
    require_libvirtd()
    etc_before = tree_state(Path("/etc/libvirt"))
    disk = create_qcow2(tmp_path / "vda.qcow2", "16M")
    daemon = LibvirtDaemon(tmp_path / "daemon")
    with daemon:
        conn = libvirt.open(daemon.uri)
        define_vm(conn, "doomed", [disk], running=True)
        assert processes_mentioning(str(disk))  # QEMU runs, with the disk on its command line
        conn.close()
    assert not processes_mentioning(str(disk))
    assert not processes_mentioning(str(daemon.root))  # nor libvirtd's init
    assert tree_state(Path("/etc/libvirt")) == etc_before
    # The domain's definition went to the private tree instead.
    assert (daemon.root / "etc" / "qemu" / "doomed.xml").exists()


def tree_state(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for p in root.rglob("*")}


def processes_mentioning(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and text in (proc / "cmdline").read_text():
                found.append(int(proc.name))
        except OSError:
            continue  # the process ended while we looked
    return found
