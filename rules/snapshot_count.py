from collections.abc import Iterator

from auditor.model import Domain
from auditor.rule import Context, Violation, rule


@rule(
    "SNAP015",
    "snapshot-count",
    "warning",
    tags=("policy",),
    scope="domain",
    params={"max_snapshots": 16},
)
def snapshot_count(domain: Domain, context: Context) -> Iterator[Violation]:
    """A domain has more snapshots than the site's limit.

    What it checks:
        The number of snapshots of each domain. One finding per domain with more than
        `max_snapshots` (default 16), naming its newest snapshot. `0` turns the check off.

    Why:
        Each snapshot holds data (an overlay, an internal state, a memory file). Many of them
        usually mean restore points nobody cleans up, filling storage and slowing the VM.

    Noncompliant:
        $ virsh snapshot-list vm --name | wc -l
        23

    Compliant:
        $ virsh snapshot-list vm --name | wc -l
        3

    Remediation:
        Delete the snapshots that are no longer needed (`virsh snapshot-delete VM NAME`), or
        raise `max_snapshots` for this rule in snapaudit.toml.

    Reference:
        libvirt, virsh snapshot-delete (https://libvirt.org/manpages/virsh.html#snapshot-delete).
    """
    limit: int = context.params["max_snapshots"]
    count = len(domain.snapshots)
    if limit and count > limit:
        yield Violation(
            f"domain has {count} snapshots (limit: {limit})", snapshot=domain.snapshots[-1].name
        )
