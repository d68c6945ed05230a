from collections.abc import Iterator

from auditor.model import Snapshot
from auditor.rule import Context, Violation, rule


@rule("SNAP008", "no-domain-definition", "warning", tags=("metadata",))
def no_domain_definition(snapshot: Snapshot, context: Context) -> Iterator[Violation]:
    """The snapshot's metadata has no embedded domain definition.

    What it checks:
        The snapshot has no `<domain>` element with `<devices>`, as in metadata written by
        very old libvirt versions or redefined by hand.

    Why:
        libvirt needs the domain definition of the moment to revert reliably (devices and
        disk sources may have changed since), and without it this tool cannot tell which
        storage the snapshot's disks used, so storage rules cannot be checked.

    Noncompliant:
        <domainsnapshot>
          <name>before-upgrade</name>
          <state>shutoff</state>
          <memory snapshot='no'/>
          <disks>
            <disk name='vda' snapshot='external'/>
          </disks>
        </domainsnapshot>

    Compliant:
        <domainsnapshot>
          <name>before-upgrade</name>
          <state>shutoff</state>
          <memory snapshot='no'/>
          <disks>
            <disk name='vda' snapshot='external'/>
          </disks>
          <domain type='kvm'>
            <devices>
              <disk type='file' device='disk'>...</disk>
            </devices>
          </domain>
        </domainsnapshot>

    Remediation:
        Give the snapshot back the domain definition it was taken with:
        `virsh snapshot-dumpxml VM NAME > FILE`, add that `<domain>` to FILE (the output of
        `virsh dumpxml --inactive VM` if the VM's devices have not changed since), then
        `virsh snapshot-create VM FILE --redefine` (with `--current` if it is the current
        snapshot). Only its metadata changes; a new snapshot would capture the VM as it is
        now, not the old state.

    Reference:
        libvirt, Snapshot XML format: the <domain> element (https://libvirt.org/formatsnapshot.html).
    """
    if not snapshot.has_domain_definition:
        yield Violation(
            "no embedded domain definition: revert is unreliable and storage cannot be checked"
        )
