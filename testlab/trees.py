"""Domains whose disks hold a tree of internal snapshots, every disk state known block by
block, so tests can prove that a conversion kept every byte.

Writes are whole MiB blocks of one pattern byte; a state is the pattern of each block (0 for
never written). `read_back` checks an image against a state with one qemu-io process.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import libvirt

from testlab import guest as bios_guest
from testlab.images import create_qcow2, create_raw, write_pattern
from testlab.vms import define_vm, snapshot_internal, snapshot_internal_live

MiB = 1024 * 1024
SECURE_DOMAIN = libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE


class SnapshotTree:
    """A shut-off domain with qcow2 disks (vda, vdb, ...) of SIZE_MIB each; optionally a
    read-only raw disk that snapshots do not capture (libvirt refuses internal snapshots
    beside a writable one), which no conversion may touch. With GUEST, a boot disk (also
    read-only raw, left out of snapshots) lets `guest_write` write through the running VM."""

    def __init__(
        self,
        conn: libvirt.virConnect,
        name: str,
        directory: Path,
        *,
        disks: int = 1,
        size_mib: int = 8,
        excluded_raw: bool = False,
        guest: bool = False,
    ):
        directory.mkdir(parents=True, exist_ok=True)
        self.size_mib = size_mib
        self.images = {
            f"vd{chr(ord('a') + i)}": create_qcow2(directory / f"{name}-{i}.qcow2", f"{size_mib}M")
            for i in range(disks)
        }
        specs: list[Path | dict] = list(self.images.values())
        if excluded_raw:
            raw = create_raw(directory / f"{name}-data.raw", f"{size_mib}M")
            specs.append({"path": raw, "format": "raw", "snapshot": "no"})
            self.excluded = raw
        self.dom = define_vm(conn, name, specs)
        if excluded_raw:
            xml = ET.fromstring(self.dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
            for disk in xml.iterfind("devices/disk"):
                if disk.find("source").get("file") == str(raw.resolve()):
                    ET.SubElement(disk, "readonly")
            self.dom = conn.defineXML(ET.tostring(xml, encoding="unicode"))
        if guest:
            self.boot = create_raw(directory / f"{name}-boot.raw", "1M")  # blank: idles
            self.serial_log = directory / f"{name}-serial.log"
            self.serial_log.touch()  # there from the start, so it is not a file a run left
            xml = self.dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
            self.dom = conn.defineXML(bios_guest.attach(xml, self.boot, self.serial_log))
        self.now = {disk: [0] * size_mib for disk in self.images}
        self.states: dict[str, dict[str, list[int]]] = {}  # snapshot → disk → blocks

    def write(self, disk: str, block: int, pattern: int, blocks: int = 1) -> None:
        write_pattern(self.images[disk], pattern, block * MiB, blocks * MiB)
        self.now[disk][block : block + blocks] = [pattern] * blocks

    def guest_write(self, disk: str, block: int, pattern: int, blocks: int = 1) -> None:
        """What `write` does, done by the guest through the running VM: boot it, let it
        write, and wait until it has powered itself off."""
        drive = bios_guest.data_drives(self.dom.XMLDesc())[disk]
        sector = bios_guest.boot_sector(drive=drive, pattern=pattern, mib=block, blocks=blocks)
        bios_guest.arm(self.boot, sector)
        try:
            output = bios_guest.run(self.dom, self.serial_log)
        finally:
            bios_guest.disarm(self.boot)  # a later start (a live snapshot, say) writes nothing
        if output != "boot drive 80: done\n":
            raise RuntimeError(f"the guest reported {output!r}")
        self.now[disk][block : block + blocks] = [pattern] * blocks

    def snapshot(self, name: str, description: str | None = None) -> None:
        if description is None:
            snapshot_internal(self.dom, name)
        else:
            root = ET.Element("domainsnapshot")
            ET.SubElement(root, "name").text = name
            ET.SubElement(root, "description").text = description
            self.dom.snapshotCreateXML(ET.tostring(root, encoding="unicode"))
        self.states[name] = {disk: list(blocks) for disk, blocks in self.now.items()}

    def snapshot_live(self, name: str) -> None:
        """An internal snapshot with memory, taken while the guest runs; the guest is then
        destroyed, leaving the domain shut off."""
        self.dom.create()
        try:
            snapshot_internal_live(self.dom, name)
        finally:
            self.dom.destroy()
        self.states[name] = {disk: list(blocks) for disk, blocks in self.now.items()}

    def revert(self, name: str) -> None:
        self.dom.revertToSnapshot(self.dom.snapshotLookupByName(name))
        self.now = {disk: list(blocks) for disk, blocks in self.states[name].items()}

    def metadata(self) -> tuple[str, dict[str, str], str | None]:
        """Domain XML, every snapshot's XML and the current snapshot, secrets included."""
        return metadata(self.dom)


@contextlib.contextmanager
def removed_afterwards(conn: libvirt.virConnect) -> Iterator[None]:
    """Destroy and undefine every domain created inside (snapshot metadata included), so
    that tests sharing one libvirtd never see each other's domains."""
    before = {dom.UUIDString() for dom in conn.listAllDomains()}
    try:
        yield
    finally:
        flags = (
            libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
            | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
        )
        for dom in conn.listAllDomains():
            if dom.UUIDString() not in before:
                if dom.isActive():
                    dom.destroy()
                dom.undefineFlags(flags)


def metadata(dom: libvirt.virDomain) -> tuple[str, dict[str, str], str | None]:
    snaps = {
        s.getName(): s.getXMLDesc(libvirt.VIR_DOMAIN_SNAPSHOT_XML_SECURE)
        for s in dom.listAllSnapshots()
    }
    current = next((s.getName() for s in dom.listAllSnapshots() if s.isCurrent()), None)
    return dom.XMLDesc(SECURE_DOMAIN), snaps, current


def disk_sources(xml: str, tag: str = ".") -> dict[str, str]:
    """Disk target → source file in a domain XML, or in the element TAG of a snapshot XML."""
    root = ET.fromstring(xml)
    definition = root if tag == "." else root.find(tag)
    return {
        d.find("target").get("dev"): d.find("source").get("file")
        for d in definition.iterfind("devices/disk")
        if d.find("source") is not None
    }


def read_back(
    image: Path | str, blocks: list[int], fmt: str = "qcow2", *, snapshot: str | None = None
) -> list[str]:
    """Differences between what IMAGE (or its internal SNAPSHOT) shows the guest and BLOCKS,
    read-only, every byte covered; empty when they match exactly."""
    if snapshot is not None:
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / "snapshot.qcow2"
            # Commas are doubled in QEMU option syntax (testlab.images does not escape them).
            option = "snapshot.name=" + snapshot.replace(",", ",,")
            subprocess.run(
                ["qemu-img", "convert", "-U", "-O", "qcow2", "-l", option, str(image), str(copy)],
                check=True,
                capture_output=True,
            )
            return read_back(copy, blocks)
    commands: list[str] = []
    start = 0
    for index in range(1, len(blocks) + 1):
        if index == len(blocks) or blocks[index] != blocks[start]:
            length = (index - start) * MiB
            commands += ["-c", f"read -P {blocks[start]:#x} {start * MiB} {length}"]
            start = index
    proc = subprocess.run(
        ["qemu-io", "-r", "-U", "-f", fmt, *commands, str(image)], capture_output=True, text=True
    )
    output = proc.stdout + proc.stderr
    size = subprocess.run(
        ["qemu-img", "info", "-U", "--output=json", "-f", fmt, str(image)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    problems = [line for line in output.splitlines() if "fail" in line.lower()]
    if proc.returncode:
        problems.append(f"qemu-io exited with {proc.returncode}")
    if f'"virtual-size": {len(blocks) * MiB},' not in size:
        problems.append(f"virtual size is not {len(blocks)} MiB")
    return problems
