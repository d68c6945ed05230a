from collections.abc import Iterator

from auditor.model import Domain
from auditor.rule import Context, Violation, rule


@rule(
    "SNAP014", "chain-depth", "warning", tags=("policy",), scope="domain", params={"max_depth": 8}
)
def chain_depth(domain: Domain, context: Context) -> Iterator[Violation]:
    """A domain's snapshot tree is deeper than the site's limit.

    What it checks:
        The depth of each domain's snapshot tree: the longest line of snapshots from a root
        through `<parent>` links, the root counting as 1. One finding per domain whose tree
        is deeper than `max_depth` (default 8), naming the deepest snapshot. `0` turns the
        check off.

    Why:
        Every external snapshot adds an overlay to the disk's backing chain, and every read
        that misses the top image walks down the chain. Deep trees are also hard to reason
        about and slow to merge back.

    Noncompliant:
        snap1 <- snap2 <- snap3 <- ... <- snap9   (9 levels, limit 8)

    Compliant:
        snap1 <- snap2 <- snap3   (3 levels)

    Remediation:
        Delete intermediate snapshots that are no longer needed (`virsh snapshot-delete`
        merges their overlays), or raise `max_depth` for this rule in snapaudit.toml.

    Reference:
        libvirt, Snapshot XML format: <parent> (https://libvirt.org/formatsnapshot.html).
    """
    limit: int = context.params["max_depth"]
    if not limit:
        return
    parents = {s.name: s.parent for s in domain.snapshots}
    depths: dict[str, int] = {}
    name: str | None  # a snapshot, then its ancestors: None past a root
    for snapshot in domain.snapshots:
        name = snapshot.name
        if name in depths:
            continue
        # The common cases first: the parent's depth is known (snapshots come oldest
        # first), or the snapshot is a root.
        parent = parents[name]
        if parent in depths:
            depths[name] = depths[parent] + 1
            continue
        if parent not in parents:
            depths[name] = 1
            continue
        # Else walk up to the first ancestor whose depth is known, then fill the path in:
        # each snapshot's depth is computed once, however long the chain.
        path: list[str] = []
        seen: set[str] = set()
        while name in parents and name not in depths and name not in seen:  # cycles end it
            seen.add(name)
            path.append(name)
            name = parents[name]
        depth = 0 if name is None else depths.get(name, 0)
        for step in reversed(path):
            depth += 1
            depths[step] = depth
    # The first of the deepest in the domain's own order (oldest first), as reported before.
    deepest, most = None, 0
    for snapshot in domain.snapshots:
        depth = depths[snapshot.name]
        if deepest is None or depth > most:
            deepest, most = snapshot.name, depth
    if deepest is not None and depths[deepest] > limit:
        yield Violation(
            f"snapshot tree is {depths[deepest]} levels deep (limit: {limit})",
            snapshot=deepest,
        )
