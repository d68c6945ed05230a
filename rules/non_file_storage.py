from auditor.rule import Violation, rule


@rule("SNAP003", "non-file-storage", "error", tags=("storage", "disk"))
def non_file_storage(snapshot, context):
    """A captured disk is not stored in a plain file.

    What it checks:
        Every disk the snapshot captures (its mode is not `no`), one finding per disk: its
        source in the snapshot's embedded domain, or the overlay an external snapshot
        created, has a type other than `file` (block, network, volume, nvme, dir, vhostuser,
        vhostvdpa).

    Why:
        RHEL 10 supports snapshots only on file-based storage. Block devices, network
        volumes and the like have no supported way to hold a libvirt snapshot chain.

    Noncompliant:
        <domainsnapshot>
          <state>shutoff</state>
          <memory snapshot='no'/>
          <disks>
            <disk name='vda' snapshot='external' type='block'>
              <driver type='qcow2'/>
              <source dev='/dev/vg0/vm-snap1'/>
            </disk>
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
        Move the VM's disks to file-based storage (for example `virsh blockcopy` to a qcow2
        file) before taking snapshots, or exclude the disk with `snapshot='no'` if it must
        stay where it is and its state does not need a restore point.

    Reference:
        RHEL 10, "Support limitations for virtual machine snapshots".
        libvirt, Domain XML format: disk source types (https://libvirt.org/formatdomain.html#hard-drives-floppy-disks-cdroms).
    """
    for disk in snapshot.disks:
        if disk.mode == "no":
            continue
        for role, source in (("source", disk.state_image), ("external overlay", disk.overlay)):
            if source is not None and source.type != "file":
                yield Violation(
                    f"disk {disk.name}: {role} is {source.type} storage ({source.path}),"
                    " not a file",
                    disk=disk.name,
                )
                break
