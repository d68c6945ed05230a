"""Minimal VMs and the five ways libvirt snapshots them, driven for real.

No guest OS is needed: with no bootable disk the firmware idles, which is enough for QEMU to
snapshot memory and disks. Each snapshot helper returns the snapshot's XML as libvirt reports it.
"""

import re
import string
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt

from testlab.images import image_info

MEMORY_MIB = 128


def domain_type(conn: libvirt.virConnect) -> str:
    # libvirt offers kvm only where /dev/kvm is usable; otherwise fall back to TCG.
    caps = ET.fromstring(conn.getCapabilities())
    arch = caps.findtext("host/cpu/arch")
    kvm = caps.find(f"guest/arch[@name='{arch}']/domain[@type='kvm']")
    return "qemu" if kvm is None else "kvm"


def _disk_element(disk: Path | dict, target: str) -> ET.Element:
    spec = disk if isinstance(disk, dict) else {"path": disk}
    kind = spec.get("type", "file")
    fmt = spec.get("format") or image_info(spec["path"])["format"]
    element = ET.Element("disk", type=kind, device="disk")
    if "snapshot" in spec:
        element.set("snapshot", spec["snapshot"])
    ET.SubElement(element, "driver", name="qemu", type=fmt)
    source_attr = "dev" if kind == "block" else "file"
    ET.SubElement(element, "source", {source_attr: str(Path(spec["path"]).resolve())})
    ET.SubElement(element, "target", dev=target, bus="virtio")
    return element


def define_vm(
    conn: libvirt.virConnect,
    name: str,
    disks: list[Path | dict],
    *,
    guest_agent: bool = False,
    running: bool = False,
) -> libvirt.virDomain:
    """Define (and optionally start) a 128 MiB, 1 vCPU guest with DISKS as vda, vdb, ...

    A disk is an image path, or a dict with "path" and optionally "format" (probed if absent),
    "type" ("file" or "block") and "snapshot" (the disk's default mode: "no" excludes it).
    """
    domain = ET.Element("domain", type=domain_type(conn))
    ET.SubElement(domain, "name").text = name
    ET.SubElement(domain, "memory", unit="MiB").text = str(MEMORY_MIB)
    ET.SubElement(domain, "vcpu").text = "1"
    ET.SubElement(ET.SubElement(domain, "os"), "type").text = "hvm"
    devices = ET.SubElement(domain, "devices")
    for index, disk in enumerate(disks):
        devices.append(_disk_element(disk, f"vd{string.ascii_lowercase[index]}"))
    if guest_agent:
        channel = ET.SubElement(devices, "channel", type="unix")
        ET.SubElement(channel, "target", type="virtio", name="org.qemu.guest_agent.0")
    dom = conn.defineXML(ET.tostring(domain, encoding="unicode"))
    if running:
        dom.create()
    return dom


def _require_running(dom: libvirt.virDomain, running: bool) -> None:
    # libvirt would silently take a different kind of snapshot in the other state.
    if bool(dom.isActive()) != running:
        raise ValueError(f"{dom.name()} must be {'running' if running else 'shut off'}")


def _external_disks(dom: libvirt.virDomain, name: str, overlay_dir: Path) -> dict[str, Path]:
    """An overlay path for each disk, leaving out disks the domain excludes from snapshots."""
    overlay_dir = overlay_dir.resolve()
    overlay_dir.mkdir(parents=True, exist_ok=True)
    safe_name = re.sub(r"[^\w.-]", "_", name)  # snapshot names may hold markup or slashes
    overlays = {}
    for disk in ET.fromstring(dom.XMLDesc()).iterfind("devices/disk[@device='disk']"):
        if disk.get("snapshot") not in ("no", "manual"):
            target = disk.find("target").get("dev")
            overlays[target] = overlay_dir / f"{dom.name()}.{safe_name}.{target}.qcow2"
    return overlays


def _snapshot(
    dom: libvirt.virDomain,
    name: str,
    *,
    memory: dict[str, str] | None = None,
    external: dict[str, Path] | None = None,
    flags: int = 0,
) -> str:
    root = ET.Element("domainsnapshot")
    ET.SubElement(root, "name").text = name
    if memory is not None:
        ET.SubElement(root, "memory", memory)
    if external is not None:
        disks = ET.SubElement(root, "disks")
        for target, overlay in external.items():
            disk = ET.SubElement(disks, "disk", name=target, snapshot="external")
            ET.SubElement(disk, "source", file=str(overlay))
    return dom.snapshotCreateXML(ET.tostring(root, encoding="unicode"), flags).getXMLDesc()


def snapshot_internal(dom: libvirt.virDomain, name: str) -> str:
    """Shut-off VM, libvirt's default (like `virsh snapshot-create-as`): internal disks."""
    _require_running(dom, False)
    return _snapshot(dom, name)


def snapshot_internal_live(dom: libvirt.virDomain, name: str) -> str:
    """Running VM, default: memory and disks internal to the qcow2 images."""
    _require_running(dom, True)
    return _snapshot(dom, name)


def snapshot_external_offline(dom: libvirt.virDomain, name: str, overlay_dir: Path) -> str:
    """Shut-off VM: a new qcow2 overlay per disk in OVERLAY_DIR, no memory."""
    _require_running(dom, False)
    disks = _external_disks(dom, name, Path(overlay_dir))
    return _snapshot(dom, name, memory={"snapshot": "no"}, external=disks)


def snapshot_external_live_memspec(
    dom: libvirt.virDomain, name: str, mem_file: Path, overlay_dir: Path
) -> str:
    """Running VM (`--memspec`): memory saved to MEM_FILE, overlays in OVERLAY_DIR."""
    _require_running(dom, True)
    memory = {"snapshot": "external", "file": str(Path(mem_file).resolve())}
    disks = _external_disks(dom, name, Path(overlay_dir))
    return _snapshot(dom, name, memory=memory, external=disks)


def snapshot_disk_only(dom: libvirt.virDomain, name: str, overlay_dir: Path) -> str:
    """Running VM (`--disk-only`, no `--quiesce`: there is no guest agent inside)."""
    _require_running(dom, True)
    disks = _external_disks(dom, name, Path(overlay_dir))
    flags = libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY
    return _snapshot(dom, name, external=disks, flags=flags)
