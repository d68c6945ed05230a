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
        Take a new external snapshot with a current libvirt (which always embeds the domain)
        and delete the old one, or redefine the snapshot's metadata with the domain definition
        it was taken from (`virsh snapshot-create VM FILE --redefine`).

    Reference:
        libvirt, Snapshot XML format: the <domain> element (https://libvirt.org/formatsnapshot.html).
    """
    if not snapshot.has_domain_definition:
        yield Violation(
            "no embedded domain definition: revert is unreliable and storage cannot be checked"
        )
