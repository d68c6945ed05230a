from collections.abc import Iterator

from auditor.model import Snapshot
from auditor.rule import Context, Violation, rule


@rule("SNAP001", "internal-memory", "error", tags=("internal", "memory"))
def internal_memory(snapshot: Snapshot, context: Context) -> Iterator[Violation]:
    """The VM's memory state is stored inside its qcow2 disk image.

    What it checks:
        The snapshot's `<memory>` element has `snapshot='internal'`: the guest's RAM and
        device state were saved into the disk image itself, as `virsh snapshot-create-as`
        does by default for a running VM on qcow2.

    Why:
        Internal snapshots are deprecated on RHEL 10 and not supported for production use.
        They also freeze the guest while the whole memory is written into the image, and can
        only be reverted on the same image.

    Noncompliant:
        <domainsnapshot>
          <state>running</state>
          <memory snapshot='internal'/>
          <disks>
            <disk name='vda' snapshot='internal'/>
          </disks>
        </domainsnapshot>

    Compliant:
        <domainsnapshot>
          <state>running</state>
          <memory snapshot='external' file='/var/lib/libvirt/images/vm.mem'/>
          <disks>
            <disk name='vda' snapshot='external' type='file'>
              <driver type='qcow2'/>
              <source file='/var/lib/libvirt/images/vm.overlay'/>
            </disk>
          </disks>
        </domainsnapshot>

    Remediation:
        `snapaudit fix -c URI --domain VM --drop-memory` (VM shut off) shows the plan that
        converts the domain's snapshots to external ones; add `--apply` to run it. Every disk
        state is kept and verified, but memory state cannot be converted: the snapshot becomes
        a crash-consistent disk-only one. If that memory state is still needed, keep the
        snapshot and waive this finding: deleting it and taking a new one would capture the
        VM as it is now, not the old state. Take new live snapshots with
        `virsh snapshot-create-as VM NAME --live --memspec file=PATH
        --diskspec vda,snapshot=external`.

    Reference:
        RHEL 10, "Support limitations for virtual machine snapshots".
        libvirt, Snapshot XML format: the <memory> element (https://libvirt.org/formatsnapshot.html).
    """
    if snapshot.memory == "internal":
        yield Violation("memory state is stored inside the disk image (internal snapshot)")
