from collections.abc import Iterator

from auditor.model import Snapshot
from auditor.rule import Context, Violation, rule


@rule("SNAP006", "disk-excluded", "warning", tags=("consistency", "disk"))
def disk_excluded(snapshot: Snapshot, context: Context) -> Iterator[Violation]:
    """A writable disk is left out of the snapshot.

    What it checks:
        Every disk with `snapshot='no'` whose device is `disk` and that is not read-only.
        CD-ROMs, floppies, LUNs, read-only disks and empty drives are not reported, nor are
        disks of a snapshot without an embedded domain (their device is unknown; SNAP008
        reports that).

    Why:
        Reverting restores the captured disks but leaves an excluded writable disk as it is
        now, so the VM comes back with disks from different points in time.

    Noncompliant:
        <disks>
          <disk name='vda' snapshot='external' type='file'>
            <source file='/var/lib/libvirt/images/vm.snap1'/>
          </disk>
          <disk name='vdb' snapshot='no'/>  <!-- vdb is a writable data disk -->
        </disks>

    Compliant:
        <disks>
          <disk name='vda' snapshot='external' type='file'>
            <source file='/var/lib/libvirt/images/vm.snap1'/>
          </disk>
          <disk name='vdb' snapshot='external' type='file'>
            <source file='/var/lib/libvirt/images/vm-data.snap1'/>
          </disk>
        </disks>

    Remediation:
        Include every writable disk in the snapshot (`--diskspec vdb,snapshot=external`), or
        document why its contents do not need to match the rest of the restore point.

    Reference:
        libvirt, Snapshot XML format: the snapshot attribute of <disk> (https://libvirt.org/formatsnapshot.html).
    """
    for disk in snapshot.disks:
        if disk.mode == "no" and disk.device == "disk" and not disk.readonly and disk.state_image:
            yield Violation(
                f"writable disk {disk.name} is not part of the snapshot: a revert leaves it"
                " out of step",
                disk=disk.name,
            )
