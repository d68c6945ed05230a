from collections.abc import Iterator

from auditor.model import Host
from auditor.rule import Context, Violation, rule


@rule("HOST001", "no-external-revert", "warning", tags=("host",), scope="host")
def no_external_revert(host: Host, context: Context) -> Iterator[Violation]:
    """The host's libvirt cannot revert to or delete external snapshots.

    What it checks:
        QEMU hosts whose capabilities (`virsh capabilities`) have no `<externalSnapshot/>`
        among the guest features: libvirt older than 9.9 (Debian 12's 9.0, for example).
        Other drivers, and hosts whose capabilities could not be read, are not reported.

    Why:
        External snapshots are the supported kind, but before libvirt 9.9 `virsh
        snapshot-revert` and `snapshot-delete` refuse them. Converting or creating external
        snapshots there leaves operators with restore points they cannot use without manual
        image surgery.

    Noncompliant:
        <capabilities><guest><features><disksnapshot default='on' toggle='no'/></features>
        </guest></capabilities>

    Compliant:
        <capabilities><guest><features><disksnapshot default='on' toggle='no'/>
          <externalSnapshot/></features></guest></capabilities>

    Remediation:
        Upgrade libvirt to 9.9 or later (RHEL 10, or Debian 12 with bookworm-backports)
        before relying on external snapshots on this host, `snapaudit fix` included.

    Reference:
        libvirt 9.9.0 release notes: reverting and deleting external snapshots (https://libvirt.org/news.html).
    """
    if host.driver == "QEMU" and host.external_snapshot_revert is False:
        yield Violation("libvirt on this host cannot revert to or delete external snapshots")
