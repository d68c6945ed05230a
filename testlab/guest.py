"""A guest with no OS that writes through a running VM: a 512-byte MBR boot sector which,
under SeaBIOS (QEMU's default firmware), fills a range of a data disk with one byte value
through the BIOS (int 13h, AH=43h, LBA), reports on the serial port (COM1) and powers the VM
off through ACPI.

The code is 16-bit real mode, written out here as bytes (no assembler needed) by a two-pass
builder that resolves labels. The parameters (drive, pattern, range) are assembled into the
sector when it is built. The serial line reads "boot drive 80: done" on success, or
"boot drive 80: write failed, status XX" with the BIOS status, then the VM powers off.
"""

from __future__ import annotations

import string
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import libvirt

SECTOR = 512
LOAD = 0x7C00  # where the BIOS loads and enters the boot sector (0000:7C00)
SECTORS_PER_MIB = 1024 * 1024 // SECTOR
CHUNK = 64  # sectors per int 13h call: 32 KiB, well inside one 64 KiB segment
BUFFER_SEGMENT = 0x1000  # the buffer at 0x10000, free conventional memory
COM1 = 0x3F8
# PIIX4 power management (i440fx, bus 0 device 1 function 3), its I/O base register 0x40,
# which SeaBIOS programs: read it rather than assume the base.
PIIX4_PMBASE = 0x8000_0B40
FIRST_HARD_DISK = 0x80  # the boot disk; the next hard disks follow in boot order

Item = tuple[int, Callable[[dict[str, int], int], bytes], str]


class Assembler:
    """Instructions of fixed sizes, so one pass places the labels and the next encodes."""

    def __init__(self) -> None:
        self.items: list[Item | str] = []

    def label(self, name: str) -> None:
        self.items.append(name)

    def emit(self, code: bytes, comment: str) -> None:
        self.items.append((len(code), lambda labels, here: code, comment))

    def rel8(self, opcode: int, target: str, comment: str) -> None:
        """A short jump: the displacement counts from the end of this 2-byte instruction."""

        def encode(labels: dict[str, int], here: int) -> bytes:
            displacement = labels[target] - (here + 2)
            assert -128 <= displacement < 128, f"{target} is out of a short jump's reach"
            return bytes([opcode, displacement & 0xFF])

        self.items.append((2, encode, comment))

    def call(self, target: str, comment: str) -> None:
        """A near call, displacement from the end of this 3-byte instruction."""

        def encode(labels: dict[str, int], here: int) -> bytes:
            return b"\xe8" + ((labels[target] - (here + 3)) & 0xFFFF).to_bytes(2, "little")

        self.items.append((3, encode, comment))

    def address(self, before: bytes, target: str, after: bytes, comment: str) -> None:
        """An instruction holding the absolute address of TARGET (DS is 0, code at 7C00),
        plus OFFSET for a label written as "name+offset"."""
        name, _, offset = target.partition("+")

        def encode(labels: dict[str, int], here: int) -> bytes:
            absolute = LOAD + labels[name] + int(offset or 0)
            return before + absolute.to_bytes(2, "little") + after

        self.items.append((len(before) + 2 + len(after), encode, comment))

    def assemble(self) -> bytes:
        labels, here = {}, 0
        for item in self.items:
            if isinstance(item, str):
                labels[item] = here
            else:
                here += item[0]
        code, here = b"", 0
        for item in self.items:
            if not isinstance(item, str):
                code += item[1](labels, here)
                here += item[0]
        return code


def boot_sector(*, drive: int, pattern: int, mib: int, blocks: int = 1) -> bytes:
    """The sector that writes PATTERN over BLOCKS MiB from MiB MIB of BIOS drive DRIVE."""
    chunks = blocks * SECTORS_PER_MIB // CHUNK
    lba = mib * SECTORS_PER_MIB
    assert 0 < chunks < 0x10000 and lba < 1 << 32 and 0 <= pattern < 256 and 0 <= drive < 256
    a = Assembler()
    w = a.emit
    w(b"\xfa", "cli                     ; no interrupts while the stack moves")
    w(b"\x31\xc0", "xor ax, ax")
    w(b"\x8e\xd8", "mov ds, ax              ; data addresses are absolute (segment 0)")
    w(b"\x8e\xd0", "mov ss, ax")
    w(b"\xbc\x00\x7c", "mov sp, 0x7c00          ; the stack grows down below this code")
    w(b"\xfb", "sti")
    w(b"\xfc", "cld                     ; string instructions count upwards")
    a.address(b"\x88\x16", "boot_drive", b"", "mov [boot_drive], dl  ; the BIOS's boot drive")
    w(b"\xb8" + BUFFER_SEGMENT.to_bytes(2, "little"), "mov ax, BUFFER_SEGMENT")
    w(b"\x8e\xc0", "mov es, ax")
    w(b"\x31\xff", "xor di, di              ; es:di = the buffer")
    w(bytes([0xB0, pattern]), "mov al, PATTERN")
    w(b"\xb9" + (CHUNK * SECTOR).to_bytes(2, "little"), "mov cx, CHUNK * 512")
    w(b"\xf3\xaa", "rep stosb               ; fill the buffer with the pattern")
    a.label("write")
    a.address(b"\xbe", "dap", b"", "mov si, dap             ; ds:si = disk address packet")
    w(bytes([0xB2, drive]), "mov dl, DRIVE")
    w(b"\xb8\x00\x43", "mov ax, 0x4300          ; AH=43h extended write, AL=0 no verify")
    w(b"\xcd\x13", "int 0x13")
    a.rel8(0x72, "failed", "jc failed               ; carry: AH holds the status")
    a.address(b"\x83\x06", "dap+8", bytes([CHUNK]), "add word [dap+8], CHUNK ; next LBA")
    a.address(b"\x83\x16", "dap+10", b"\x00", "adc word [dap+10], 0    ; its high word")
    a.address(b"\xff\x0e", "chunks", b"", "dec word [chunks]")
    a.rel8(0x75, "write", "jnz write")
    a.call("boot_line", "call boot_line")
    a.address(b"\xbe", "done", b"", "mov si, done")
    a.call("print", "call print")
    a.rel8(0xEB, "poweroff", "jmp poweroff")
    a.label("failed")
    w(b"\x88\xe3", "mov bl, ah              ; keep the status")
    a.call("boot_line", "call boot_line")
    a.address(b"\xbe", "failure", b"", "mov si, failure")
    a.call("print", "call print")
    w(b"\x88\xd8", "mov al, bl")
    a.call("hex", "call hex                ; the status")
    a.address(b"\xbe", "newline", b"", "mov si, newline")
    a.call("print", "call print")
    a.label("poweroff")
    w(b"\x66\xb8" + PIIX4_PMBASE.to_bytes(4, "little"), "mov eax, PIIX4_PMBASE")
    w(b"\xba\xf8\x0c", "mov dx, 0xcf8           ; PCI configuration address")
    w(b"\x66\xef", "out dx, eax")
    w(b"\xb2\xfc", "mov dl, 0xfc            ; PCI configuration data (0xcfc)")
    w(b"\xed", "in ax, dx               ; the PM I/O base, bit 0 set (I/O space)")
    w(b"\x25\xc0\xff", "and ax, 0xffc0")
    w(b"\x05\x04\x00", "add ax, 4               ; PM1a control")
    w(b"\x89\xc2", "mov dx, ax")
    w(b"\xb8\x00\x20", "mov ax, 0x2000          ; SLP_EN with SLP_TYP 0: soft off (S5)")
    w(b"\xef", "out dx, ax")
    a.label("halt")
    w(b"\xfa", "cli                     ; should the power stay on: stop here")
    w(b"\xf4", "hlt")
    a.rel8(0xEB, "halt", "jmp halt")
    a.label("boot_line")
    w(b"\xba" + COM1.to_bytes(2, "little"), "mov dx, COM1            ; print and hex write here")
    a.address(b"\xbe", "boot", b"", "mov si, boot")
    a.call("print", "call print")
    a.address(b"\xa0", "boot_drive", b"", "mov al, [boot_drive]")
    a.call("hex", "call hex")
    a.address(b"\xbe", "colon", b"", "mov si, colon           ; and fall into print")
    a.label("print")
    w(b"\xac", "lodsb                   ; the next character of ds:si")
    w(b"\x84\xc0", "test al, al")
    a.rel8(0x74, "printed", "jz printed              ; a zero ends the string")
    w(b"\xee", "out dx, al")
    a.rel8(0xEB, "print", "jmp print")
    a.label("printed")
    w(b"\xc3", "ret")
    a.label("hex")
    w(b"\x50", "push ax                 ; AL as two hexadecimal digits")
    w(b"\xc0\xe8\x04", "shr al, 4               ; the high digit first")
    a.call("digit", "call digit")
    w(b"\x58", "pop ax")
    a.label("digit")
    w(b"\x24\x0f", "and al, 0x0f")
    w(b"\x04\x30", "add al, '0'")
    w(b"\x3c\x39", "cmp al, '9'")
    a.rel8(0x76, "digit_out", "jbe digit_out")
    w(b"\x04\x07", "add al, 7               ; 'A' to 'F'")
    a.label("digit_out")
    w(b"\xee", "out dx, al")
    w(b"\xc3", "ret")
    a.label("boot_drive")
    w(b"\x00", "the boot drive, saved at entry")
    a.label("chunks")
    w(chunks.to_bytes(2, "little"), "int 13h calls left")
    a.label("dap")
    w(b"\x10\x00", "disk address packet: its size (16), reserved")
    w(CHUNK.to_bytes(2, "little"), "sectors per call")
    w(b"\x00\x00" + BUFFER_SEGMENT.to_bytes(2, "little"), "buffer offset, segment")
    w(lba.to_bytes(8, "little"), "the first LBA (64 bits)")
    for name, text in [
        ("boot", "boot drive "),
        ("colon", ": "),
        ("done", "done\n"),
        ("failure", "write failed, status "),
        ("newline", "\n"),
    ]:
        a.label(name)
        w(text.encode() + b"\0", f"{text!r}")
    code = a.assemble()
    assert len(code) <= 446, "the code runs into the partition table"
    return code.ljust(510, b"\0") + b"\x55\xaa"


def arm(boot_image: Path, sector: bytes) -> None:
    """Make BOOT_IMAGE (raw) boot SECTOR."""
    with open(boot_image, "r+b") as out:
        out.write(sector)


def disarm(boot_image: Path) -> None:
    """A blank first sector: the firmware finds nothing to boot and idles, so the domain can
    start (for live snapshots, say) without writing anything."""
    arm(boot_image, bytes(SECTOR))


def attach(domain_xml: str, boot_image: Path, serial_log: Path) -> str:
    """DOMAIN_XML with BOOT_IMAGE as a read-only raw disk that snapshots leave out (libvirt
    refuses internal snapshots beside a writable raw disk) and boots first, COM1 logged to
    SERIAL_LOG, and ACPI on (the guest powers off through it).

    Every other disk gets a boot order too, in target order: libvirt starts QEMU with
    `-boot strict=on`, under which SeaBIOS gives a BIOS drive number only to the disks in the
    boot order, numbered in that order (see `data_drives`).

    The domain runs under TCG: this guest lives in the firmware, whose every port access is a
    VM exit, which KVM inside a VM (as on the machines this lab runs on) makes slower than
    emulation: 9 to 16 s a boot under KVM against 1 to 2 s under TCG, measured here."""
    root = ET.fromstring(domain_xml)
    root.set("type", "qemu")
    os_element = root.find("os")
    for boot in os_element.findall("boot"):  # the default libvirt fills in; one order only
        os_element.remove(boot)
    features = root.find("features")
    if features is None:
        features = ET.SubElement(root, "features")
    if features.find("acpi") is None:
        ET.SubElement(features, "acpi")
    devices = root.find("devices")
    disks = sorted(devices.iterfind("disk"), key=lambda d: d.find("target").get("dev"))
    for order, disk in enumerate(disks, 2):
        for boot in disk.findall("boot"):
            disk.remove(boot)
        ET.SubElement(disk, "boot", order=str(order))
    targets = [d.find("target").get("dev") for d in disks]
    target = next(f"vd{c}" for c in string.ascii_lowercase if f"vd{c}" not in targets)
    disk = ET.SubElement(devices, "disk", type="file", device="disk", snapshot="no")
    ET.SubElement(disk, "driver", name="qemu", type="raw")
    ET.SubElement(disk, "source", file=str(Path(boot_image).resolve()))
    ET.SubElement(disk, "target", dev=target, bus="virtio")
    ET.SubElement(disk, "readonly")
    ET.SubElement(disk, "boot", order="1")
    serial = ET.SubElement(devices, "serial", type="file")
    ET.SubElement(serial, "source", path=str(Path(serial_log).resolve()), append="off")
    ET.SubElement(serial, "target", port="0")
    return ET.tostring(root, encoding="unicode")


def data_drives(domain_xml: str) -> dict[str, int]:
    """The BIOS drive number of each disk with a boot order: SeaBIOS numbers hard disks in
    boot order from 80 (the boot disk)."""
    disks = ET.fromstring(domain_xml).iterfind("devices/disk[boot]")
    orders = {d.find("target").get("dev"): int(d.find("boot").get("order")) for d in disks}
    ranked = sorted(orders, key=orders.__getitem__)
    return {target: FIRST_HARD_DISK + rank for rank, target in enumerate(ranked)}


def run(dom: libvirt.virDomain, serial_log: Path, timeout: float = 60) -> str:
    """Start DOM, wait until the guest has powered it off, and return what it printed. The
    power must go off from inside: a destroyed QEMU may not have flushed what it wrote."""
    dom.create()
    deadline = time.monotonic() + timeout
    while dom.isActive():
        if time.monotonic() > deadline:
            dom.destroy()
            raise RuntimeError(
                f"the guest did not power off within {timeout} s: {_log(serial_log)!r}"
            )
        time.sleep(0.02)
    state, reason = dom.state()
    if (state, reason) != (libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_SHUTDOWN):
        raise RuntimeError(f"the guest did not power off by itself (state {state}, {reason})")
    return _log(serial_log)


def _log(path: Path) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return ""
