from collections.abc import Iterator

from auditor.model import Snapshot
from auditor.rule import Context, Violation, rule


@rule("SNAP005", "overlay-not-qcow2", "error", tags=("storage", "disk"))
def overlay_not_qcow2(snapshot: Snapshot, context: Context) -> Iterator[Violation]:
    """An external snapshot's overlay is not a qcow2 image.

    What it checks:
        Every disk with `snapshot='external'` whose `<driver type>` is set to anything but
        `qcow2`. A missing driver type is not reported: libvirt creates qcow2 overlays by
        default and records that type.

    Why:
        An external snapshot works by writing new data to an overlay whose backing file is the
        saved state. Only qcow2 can record a backing file, so any other overlay format breaks
        the chain and the restore point.

    Noncompliant:
        <disk name='vda' snapshot='external' type='file'>
          <driver type='raw'/>
          <source file='/var/lib/libvirt/images/vm.snap1'/>
        </disk>

    Compliant:
        <disk name='vda' snapshot='external' type='file'>
          <driver type='qcow2'/>
          <source file='/var/lib/libvirt/images/vm.snap1'/>
        </disk>

    Remediation:
        A non-qcow2 overlay cannot name the snapshot's state as its backing file; that state
        is still the image the snapshot's embedded domain names (STATE_IMAGE). If it is
        needed, copy it out first (`qemu-img convert -O qcow2 STATE_IMAGE OUT`), then remove
        the snapshot's metadata (`virsh snapshot-delete VM NAME --metadata`, which deletes no
        file). Take new snapshots with qcow2 overlays
        (`--diskspec vda,snapshot=external,driver=qcow2`).

    Reference:
        libvirt, Snapshot XML format: external disk snapshots (https://libvirt.org/formatsnapshot.html).
    """
    for disk in snapshot.disks:
        overlay = disk.overlay
        if overlay is not None and overlay.format not in (None, "qcow2"):
            yield Violation(
                f"disk {disk.name}: external overlay format is {overlay.format}, not qcow2",
                disk=disk.name,
            )
