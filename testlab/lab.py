"""The audit lab: real VMs on real images, with a snapshot of every kind the RHEL 10 support
rules talk about, plus the damage an auditor must catch. Built on any QEMU connection (the
embedded driver or a libvirtd); `EXPECTED` is what snapaudit must find in it.

Every disk gets a known pattern first, so tests can also prove what each image holds.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import libvirt

from testlab.images import create_qcow2, create_raw, write_pattern
from testlab.vms import (
    define_vm,
    domain_type,
    snapshot_disk_only,
    snapshot_external_live_memspec,
    snapshot_external_offline,
    snapshot_internal,
    snapshot_internal_live,
)

DISK_SIZE = "16M"
MiB = 1024 * 1024

# Every VM of the lab (a connection may hold others: filter on these).
DOMAINS = tuple(
    [
        "damaged-chain",
        "damaged-memory",
        "damaged-overlay",
        "disk-only",
        "disk-only-agent",
        "excluded-disk",
        "live-internal",
        "live-memspec",
        "manual-disk",
        "network-disk",
        "offline-external",
        "offline-internal",
        "raw-disk",
        "redefined",
        "unmanaged",
    ]
)

# (rule, severity, domain, snapshot or what was found, disk). `{images}` is the lab's image
# directory. Sorted as snapaudit reports: by domain, then snapshot findings, then domain ones.
EXPECTED = [
    ("SNAP010", "error", "damaged-chain", "clean", "vda"),
    ("SNAP009", "error", "damaged-memory", "checkpoint", None),
    ("SNAP009", "error", "damaged-overlay", "clean", "vda"),
    ("SNAP004", "error", "disk-only", "nightly", None),
    ("SNAP004", "warning", "disk-only-agent", "nightly", None),
    ("SNAP006", "warning", "excluded-disk", "clean", "vdb"),
    ("SNAP001", "error", "live-internal", "with-memory", None),
    ("SNAP002", "error", "live-internal", "with-memory", "vda"),
    ("SNAP004", "error", "manual-disk", "nightly", None),
    ("SNAP007", "warning", "manual-disk", "nightly", "vdb"),
    ("SNAP003", "error", "network-disk", "live", "vda"),
    ("SNAP002", "error", "offline-internal", "before-update", "vda"),
    ("SNAP005", "error", "redefined", "imported", "vda"),
    ("SNAP010", "error", "redefined", "imported", "vda"),
    ("SNAP013", "warning", "redefined", "imported", None),  # created in 2014
    # Tags in the order the image lists them.
    ("SNAP011", "error", "unmanaged", "{images}/unmanaged.qcow2@no-metadata", "vda"),
    ("SNAP011", "error", "unmanaged", "{images}/unmanaged.qcow2@by-qemu-img", "vda"),
    ("SNAP012", "warning", "unmanaged", "{images}/unmanaged.no-metadata-overlay", "vda"),
]


class NbdServer:
    """qemu-nbd exporting an image on 127.0.0.1, for a VM with non-file storage."""

    def __init__(self, image: Path, export: str = "lab") -> None:
        self.image, self.export = image, export
        with socket.socket() as probe:  # a free loopback port
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._proc = subprocess.Popen(
            [
                "qemu-nbd",
                "-t",
                "-f",
                "raw",
                "-b",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-x",
                export,
                str(image),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as client:
                if client.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"qemu-nbd did not start: {self._proc.stderr.read().decode()}")

    def stop(self) -> None:
        self._proc.terminate()
        self._proc.wait(timeout=10)


def _disk(images: Path, name: str, pattern: int) -> Path:
    path = create_qcow2(images / f"{name}.qcow2", DISK_SIZE)
    write_pattern(path, pattern, 0, MiB)
    return path


def _define_network_vm(conn: libvirt.virConnect, nbd: NbdServer) -> libvirt.virDomain:
    kind = domain_type(conn)
    return conn.defineXML(f"""<domain type='{kind}'><name>network-disk</name>
      <memory unit='MiB'>128</memory><vcpu>1</vcpu><os><type>hvm</type></os><devices>
      <disk type='network' device='disk'><driver name='qemu' type='raw'/>
        <source protocol='nbd' name='{nbd.export}'><host name='127.0.0.1' port='{nbd.port}'/>
        </source><target dev='vda' bus='virtio'/></disk>
      </devices></domain>""")


def build(conn: libvirt.virConnect, images: Path) -> NbdServer:
    """Build the lab on CONN with its images in IMAGES; returns the NBD server to stop later.
    Leaves every VM shut off."""
    images.mkdir(parents=True, exist_ok=True)

    def vm(name: str, pattern: int, **kwargs) -> libvirt.virDomain:
        return define_vm(conn, name, [_disk(images, name, pattern)], **kwargs)

    # What the seed document calls unsupported, and what it calls supported.
    snapshot_internal(vm("offline-internal", 0x11), "before-update")
    snapshot_internal_live(vm("live-internal", 0x12, running=True), "with-memory")
    snapshot_external_offline(vm("offline-external", 0x13), "clean", images)
    memspec = vm("live-memspec", 0x14, running=True)
    snapshot_external_live_memspec(memspec, "checkpoint", images / "live-memspec.mem", images)
    snapshot_disk_only(vm("disk-only", 0x15, running=True), "nightly", images)
    agent = vm("disk-only-agent", 0x16, running=True, guest_agent=True)
    snapshot_disk_only(agent, "nightly", images)

    # Non-file storage, and a raw disk (external snapshots put a qcow2 overlay on it).
    nbd_image = create_raw(images / "network-disk.raw", DISK_SIZE)
    write_pattern(nbd_image, 0x17, 0, MiB)
    nbd = NbdServer(nbd_image)
    # libvirt takes external snapshots of NBD disks only live (QEMU writes the overlay).
    network = _define_network_vm(conn, nbd)
    network.create()
    snapshot_external_live_memspec(network, "live", images / "network-disk.mem", images)
    raw = create_raw(images / "raw-disk.raw", DISK_SIZE)
    write_pattern(raw, 0x18, 0, MiB)
    snapshot_external_offline(define_vm(conn, "raw-disk", [raw]), "clean", images)

    # A data disk left out, a disk left to someone else, metadata redefined by hand (libvirt
    # 11 refuses metadata without a domain definition, so SNAP008 has test-driver fixtures only).
    excluded = define_vm(
        conn,
        "excluded-disk",
        [
            _disk(images, "excluded-disk", 0x1D),
            {"path": _disk(images, "excluded-disk-data", 0x1E), "snapshot": "no"},
        ],
    )
    snapshot_external_offline(excluded, "clean", images)
    manual = define_vm(
        conn,
        "manual-disk",
        [
            _disk(images, "manual-disk", 0x1F),
            {"path": _disk(images, "manual-disk-data", 0x20), "snapshot": "manual"},
        ],
        running=True,
    )
    snapshot_disk_only(manual, "nightly", images)
    redefined = vm("redefined", 0x21)
    create_raw(images / "redefined.imported", DISK_SIZE)
    redefined.snapshotCreateXML(
        f"""<domainsnapshot><name>imported</name><state>shutoff</state>
          <creationTime>1400000000</creationTime><memory snapshot='no'/><disks>
          <disk name='vda' snapshot='external' type='file'><driver type='raw'/>
            <source file='{images}/redefined.imported'/></disk>
        </disks>{redefined.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)}</domainsnapshot>""",
        libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE,
    )

    # Snapshots libvirt does not know about.
    unmanaged = vm("unmanaged", 0x19)
    unmanaged.snapshotCreateXML(
        "<domainsnapshot><name>no-metadata</name></domainsnapshot>",
        libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA,
    )
    subprocess.run(
        ["qemu-img", "snapshot", "-c", "by-qemu-img", str(images / "unmanaged.qcow2")],
        check=True,
    )
    unmanaged.snapshotCreateXML(
        f"""<domainsnapshot><name>no-metadata-overlay</name><memory snapshot='no'/><disks>
          <disk name='vda' snapshot='external'>
            <source file='{images}/unmanaged.no-metadata-overlay'/></disk>
        </disks></domainsnapshot>""",
        libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA
        | libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY,
    )

    # Damage done after the fact: a deleted overlay, a deleted memory file, a backing link
    # pointed elsewhere.
    snapshot_external_offline(vm("damaged-overlay", 0x1A), "clean", images)
    (images / "damaged-overlay.clean.vda.qcow2").unlink()
    damaged_memory = vm("damaged-memory", 0x1B, running=True)
    snapshot_external_live_memspec(
        damaged_memory, "checkpoint", images / "damaged-memory.mem", images
    )
    snapshot_external_offline(vm("damaged-chain", 0x1C), "clean", images)
    subprocess.run(
        [
            "qemu-img",
            "rebase",
            "-u",
            "-F",
            "qcow2",
            "-b",
            str(images / "moved-away.qcow2"),
            str(images / "damaged-chain.clean.vda.qcow2"),
        ],
        check=True,
    )

    for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
        dom.destroy()
    (images / "damaged-memory.mem").unlink()
    return nbd
