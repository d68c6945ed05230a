from collections.abc import Iterator

from auditor.model import Snapshot
from auditor.rule import Context, Violation, rule


@rule("SNAP007", "manual-snapshot", "warning", tags=("consistency", "disk"))
def manual_snapshot(snapshot: Snapshot, context: Context) -> Iterator[Violation]:
    """A disk was left for a manual snapshot that libvirt did not take.

    What it checks:
        Every disk with `snapshot='manual'`: libvirt paused I/O to it and left capturing its
        state to someone else (a storage array, a script).

    Why:
        Nothing in libvirt's metadata says whether, where or how that disk was captured, so
        neither this tool nor a revert can rely on it.

    Noncompliant:
        <disk name='vdb' snapshot='manual'/>

    Compliant:
        <disk name='vdb' snapshot='external' type='file'>
          <source file='/var/lib/libvirt/images/vm-data.snap1'/>
        </disk>

    Remediation:
        Let libvirt capture the disk as an external snapshot on file storage, or record and
        verify the manual procedure elsewhere and waive this finding.

    Reference:
        libvirt, Snapshot XML format: snapshot='manual' (https://libvirt.org/formatsnapshot.html).
    """
    for disk in snapshot.disks:
        if disk.mode == "manual":
            yield Violation(
                f"disk {disk.name} was left to a manual snapshot that cannot be verified",
                disk=disk.name,
            )
