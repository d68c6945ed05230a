from collections.abc import Iterator

from auditor.model import Severity, Snapshot
from auditor.rule import Context, Violation, rule


@rule("SNAP004", "unquiesced-disk-only", "error", tags=("consistency", "live"))
def unquiesced_disk_only(snapshot: Snapshot, context: Context) -> Iterator[Violation]:
    """A disk-only snapshot of a running VM that may not have been quiesced.

    What it checks:
        Snapshots in state `disk-snapshot` (disks captured while the VM ran, without its
        memory). Error when the snapshot's domain has no QEMU guest agent channel
        (`org.qemu.guest_agent.0`), so the file systems cannot have been quiesced; warning
        when it has one, because metadata cannot prove that `--quiesce` was used.

    Why:
        RHEL 10 supports live disk-only snapshots only with `--quiesce`, which asks the guest
        agent to flush and freeze file systems. Without it the disks hold a crash-consistent
        image that may need repair after a revert.

    Noncompliant:
        <domainsnapshot>
          <state>disk-snapshot</state>
          <memory snapshot='no'/>
          <disks>
            <disk name='vda' snapshot='external' type='file'>
              <source file='/var/lib/libvirt/images/vm.snap1'/>
            </disk>
          </disks>
          <domain type='kvm'>
            <devices><!-- no org.qemu.guest_agent.0 channel --></devices>
          </domain>
        </domainsnapshot>

    Compliant:
        <domainsnapshot>
          <state>shutoff</state>
          <memory snapshot='no'/>
          <disks>
            <disk name='vda' snapshot='external' type='file'>
              <source file='/var/lib/libvirt/images/vm.snap1'/>
            </disk>
          </disks>
        </domainsnapshot>

    Remediation:
        Add a QEMU guest agent channel to the VM and run qemu-guest-agent inside it, then take
        live disk-only snapshots with `virsh snapshot-create-as VM NAME --disk-only --quiesce`;
        or shut the VM down before taking the snapshot.

    Reference:
        RHEL 10, "Support limitations for virtual machine snapshots".
        libvirt, virsh snapshot-create-as --quiesce (https://libvirt.org/manpages/virsh.html#snapshot-create-as).
    """
    if snapshot.state != "disk-snapshot":
        return
    if snapshot.has_guest_agent:
        yield Violation(
            "live disk-only snapshot: the VM has a guest agent, but quiesce cannot be proven"
            " from metadata",
            severity=Severity.WARNING,
        )
    else:
        yield Violation(
            "live disk-only snapshot of a VM without a guest agent channel: it cannot have been"
            " quiesced"
        )
