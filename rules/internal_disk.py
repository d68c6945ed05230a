from collections.abc import Iterator

from auditor.model import Snapshot
from auditor.rule import Context, Violation, rule


@rule("SNAP002", "internal-disk", "error", tags=("internal", "disk"))
def internal_disk(snapshot: Snapshot, context: Context) -> Iterator[Violation]:
    """A disk's state is stored inside its own qcow2 image.

    What it checks:
        Every disk of the snapshot whose mode is `internal`, one finding per disk, with the
        mode libvirt resolves when it aligns a snapshot's disks with the domain's. A listed
        disk without `snapshot=` is external when it names a new image (a `<source>` or a
        `<driver type>`); otherwise it, like a disk missing from `<disks>`, takes the domain
        disk's own `snapshot=` attribute, or the snapshot's default location: `external`
        when the snapshot is external in any way (disk-only state, external memory, an
        external disk), `internal` when it is not. An internal snapshot takes only
        `snapshot='no'` from a listed disk's domain attribute, and an empty drive is never
        captured. A disk named by its source path is the domain disk with that source.

    Why:
        Internal disk snapshots are deprecated on RHEL 10 and not supported for production
        use. They live inside the image they protect, so they cannot be moved or verified on
        their own, and they only work on qcow2.

    Noncompliant:
        <domainsnapshot>
          <state>shutoff</state>
          <memory snapshot='no'/>
          <disks>
            <disk name='vda' snapshot='internal'/>
            <disk name='/var/lib/libvirt/images/data.qcow2'/>  <!-- vdb: internal -->
          </disks>
        </domainsnapshot>

    Compliant:
        <domainsnapshot>
          <state>disk-snapshot</state>
          <memory snapshot='no'/>
          <disks>
            <disk name='vda' snapshot='external' type='file'>
              <driver type='qcow2'/>
              <source file='/var/lib/libvirt/images/vm.snap1'/>
            </disk>
            <disk name='vdb'/>  <!-- disk-only: external -->
            <disk name='vdc'><driver type='qcow2'/></disk>  <!-- external: a new image -->
          </disks>
        </domainsnapshot>

    Remediation:
        `snapaudit fix -c URI --domain VM` (VM shut off) shows the plan that converts the
        domain's internal snapshots to external ones, keeping every state; add `--apply` to
        run it (with `--drop-memory` if a snapshot also holds memory state, SNAP001). By hand,
        copy each state out before deleting an internal snapshot
        (`qemu-img convert -O qcow2 -l snapshot.name=NAME IMAGE OUT`): a new snapshot captures
        the VM as it is now, not the old state. Take new snapshots with
        `virsh snapshot-create-as VM NAME --disk-only` (VM shut off, or live with `--quiesce`).

    Reference:
        RHEL 10, "Support limitations for virtual machine snapshots".
        libvirt, Snapshot XML format: the <disks> element (https://libvirt.org/formatsnapshot.html).
    """
    for disk in snapshot.disks:
        if disk.mode == "internal":
            how = ""
            if disk.defaulted:
                listed = "a listed disk without snapshot=" if disk.listed else None
                how = f"; libvirt's default for {listed or 'a disk the snapshot does not list'}"
            yield Violation(
                f"disk {disk.name} is captured inside its own image (internal snapshot{how})",
                disk=disk.name,
            )
