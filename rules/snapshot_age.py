from collections.abc import Iterator

from auditor.model import Snapshot
from auditor.rule import Context, Violation, rule

DAY = 86400


@rule("SNAP013", "snapshot-age", "warning", tags=("policy",), params={"max_age_days": 30})
def snapshot_age(snapshot: Snapshot, context: Context) -> Iterator[Violation]:
    """A snapshot is older than the site's limit.

    What it checks:
        Snapshots whose creation time is more than `max_age_days` days (default 30) before
        the time of the scan. `max_age_days = 0` turns the check off. Snapshots without a
        creation time are not reported.

    Why:
        Snapshots are restore points for a change, not backups. An old snapshot pins old data
        (its overlay or internal state keeps growing as the VM writes), slows I/O through a
        longer chain, and is rarely still the state anyone wants to go back to.

    Noncompliant:
        <domainsnapshot>
          <name>before-upgrade</name>
          <creationTime>1700000000</creationTime>  <!-- months before the scan -->
        </domainsnapshot>

    Compliant:
        <domainsnapshot>
          <name>before-upgrade</name>
          <creationTime>1764000000</creationTime>  <!-- days before the scan -->
        </domainsnapshot>

    Remediation:
        Delete snapshots that are no longer needed (`virsh snapshot-delete VM NAME`, which
        merges external overlays), or raise `max_age_days` for this rule in snapaudit.toml,
        or waive the finding with a reason and an expiry date.

    Reference:
        libvirt knowledge base, Domain state capture (https://libvirt.org/kbase/domainstatecapture.html).
    """
    limit: int = context.params["max_age_days"]
    if not limit or snapshot.created is None:
        return
    age = (context.now - snapshot.created).total_seconds()
    if age > limit * DAY:
        yield Violation(f"snapshot is {int(age // DAY)} days old (limit: {limit} days)")
