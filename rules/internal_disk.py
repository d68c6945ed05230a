from auditor.rule import Violation, rule


@rule("SNAP002", "internal-disk", "error", tags=("internal", "disk"))
def internal_disk(snapshot, context):
    """A disk's state is stored inside its own qcow2 image.

    What it checks:
        Every disk of the snapshot whose mode is `snapshot='internal'`, one finding per disk.
        A disk missing from the snapshot's `<disks>` takes libvirt's default: the domain
        disk's own `snapshot=` attribute if it has one, `no` for an empty drive, otherwise
        `external` when the snapshot is external in any way (disk-only state, external memory
        or another external disk) and `internal` when it is not.

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
          </disks>
        </domainsnapshot>

    Compliant:
        <domainsnapshot>
          <state>shutoff</state>
          <memory snapshot='no'/>
          <disks>
            <disk name='vda' snapshot='external' type='file'>
              <driver type='qcow2'/>
              <source file='/var/lib/libvirt/images/vm.snap1'/>
            </disk>
          </disks>
        </domainsnapshot>

    Remediation:
        Recreate the restore point as an external snapshot on file storage (shut the VM down,
        then `virsh snapshot-create-as VM NAME --disk-only`, or live with
        `--disk-only --quiesce`), then delete the internal one.

    Reference:
        RHEL 10, "Support limitations for virtual machine snapshots".
        libvirt, Snapshot XML format: the <disks> element (https://libvirt.org/formatsnapshot.html).
    """
    for disk in snapshot.disks:
        if disk.mode == "internal":
            how = "; libvirt's default for a disk the snapshot does not list" * disk.defaulted
            yield Violation(
                f"disk {disk.name} is captured inside its own image (internal snapshot{how})",
                disk=disk.name,
            )
