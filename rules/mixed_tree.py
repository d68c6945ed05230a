from collections.abc import Iterator, Mapping

from auditor.model import Domain
from auditor.rule import Context, Violation, rule


@rule("SNAP017", "mixed-snapshot-tree", "error", tags=("internal", "external"), scope="domain")
def mixed_tree(domain: Domain, context: Context) -> Iterator[Violation]:
    """A domain's snapshot tree holds both internal and external snapshots.

    What it checks:
        Every domain whose snapshots include at least one internal snapshot (a disk or the
        memory stored inside a qcow2 image) and at least one external snapshot (an overlay
        or a memory file). One finding per domain, naming the oldest internal snapshot
        whose parent or child is external (where the tree crosses from one kind to the
        other), or the oldest internal snapshot when the kinds sit in separate trees: the
        internal snapshots are the ones to convert. A snapshot that is both at once (one disk
        internal, another external) makes a mixed tree on its own: the message names it and
        what it holds of each kind.

    Why:
        Since virt-manager 5 and cockpit-machines switched to external snapshots, every VM
        that already had internal snapshots gets a mixed tree the next time someone clicks
        "snapshot", and libvirt does not handle the two kinds together:
        - libvirt refuses to delete an external snapshot whose parent is internal ("deleting
          external snapshot that has internal snapshot as parent not supported", libvirt
          11.3): `int1 -> ext1 -> int2` cannot be cleaned up;
        - older libvirt deleted the base image instead (virt-manager issue #811, libvirt
          10.10; #800 "all my VM snapshots got ruined"; #862);
        - reverting from an external snapshot back to an internal one rewrites the base image
          under the external snapshot's overlay, and deleting the external snapshot then
          leaves its overlay on disk, referenced by nothing (see SNAP018).

    Noncompliant:
        $ virsh snapshot-list vm --tree
        int1                 <- internal (inside vm.qcow2)
          |
          +- ext1            <- external (overlay vm.ext1)
              |
              +- int2        <- internal (inside vm.ext1)

    Compliant:
        Every snapshot of the domain is external (or every one internal, which SNAP001 and
        SNAP002 report on their own).

    Remediation:
        `snapaudit fix -c URI --domain VM` (VM shut off) shows the plan that converts the whole
        tree to external snapshots, its external ones included; add `--apply` to run it (with
        `--drop-memory` if a snapshot holds internal memory state, SNAP001). Every state is
        copied and verified before any metadata changes, and the original images are never
        written. Deleting snapshots does not untangle the tree: libvirt refuses some of those
        deletions, and older versions deleted the base image.

    Reference:
        virt-manager issues #811, #800 and #862 (https://github.com/virt-manager/virt-manager/issues).
        libvirt knowledge base, Internals of snapshots (https://libvirt.org/kbase/snapshots.html).
    """
    # The kinds of each snapshot as bits (INTERNAL, EXTERNAL): this runs for every
    # snapshot of the fleet, and sets of strings cost far more.
    kinds: dict[str, int] = {}
    for s in domain.snapshots:
        found = _BITS.get(s.memory, 0)
        for d in s.disks:
            found |= _BITS.get(d.mode, 0)
        kinds[s.name] = found
    internal = external = 0
    for found in kinds.values():
        internal += found & INTERNAL
        external += (found & EXTERNAL) >> 1
    if not (internal and external):
        return
    yield Violation(
        f"mixed snapshot tree: {_what_mixes(domain, kinds)}; libvirt refuses to delete an"
        " external snapshot whose parent is internal (older libvirt deleted the base image),"
        " and a revert across kinds strands overlays",
        snapshot=_crossing(domain, kinds),
    )


INTERNAL, EXTERNAL = 1, 2
_BITS = {"internal": INTERNAL, "external": EXTERNAL}


def _crossing(domain: Domain, kinds: Mapping[str, int]) -> str:
    """The oldest internal snapshot next to an external one (its parent or its child): where
    the tree crosses kinds; else the oldest internal snapshot. Only internal snapshots are
    named, as they are the kind to remove."""
    parents = {s.name: s.parent for s in domain.snapshots}
    children: dict[str | None, list[str]] | None = None  # built only when no parent settles it
    internal = [s.name for s in domain.snapshots if kinds[s.name] & INTERNAL]
    for name in internal:
        parent = parents.get(name)
        if parent and kinds.get(parent, 0) & EXTERNAL:
            return name
        if children is None:
            children = {}
            for child, of in parents.items():
                children.setdefault(of, []).append(child)
        if any(kinds.get(c, 0) & EXTERNAL for c in children.get(name, ()) if c):
            return name
    return internal[0]


def _what_mixes(domain: Domain, kinds: Mapping[str, int]) -> str:
    """How many snapshots of each kind the tree holds; a snapshot that is both kinds at once
    is named, with what it holds of each, and counted in neither."""
    internal = sum(found == INTERNAL for found in kinds.values())
    external = sum(found == EXTERNAL for found in kinds.values())
    both = [s for s in domain.snapshots if kinds[s.name] == INTERNAL | EXTERNAL]
    counts = []
    if internal:
        counts.append(_count(internal, "internal"))
    if external:  # "1 internal snapshot and 2 external": the noun once
        counts.append(_count(external, "external") if not internal else f"{external} external")
    if not both:
        return " and ".join(counts)
    first = both[0]
    parts = {kind: [d.name for d in first.disks if d.mode == kind] for kind in _BITS}
    for kind, names in parts.items():
        if first.memory == kind:
            names.insert(0, "memory")
    what = "disks" if "memory" not in parts["internal"] + parts["external"] else "state"
    text = (
        f"snapshot {first.name!r} mixes internal ({', '.join(parts['internal'])}) and"
        f" external ({', '.join(parts['external'])}) {what}"
    )
    if len(both) == 2:
        text += ", as does 1 other snapshot"
    elif len(both) > 2:
        text += f", as do {len(both) - 1} other snapshots"
    if counts:
        text += ", and the tree also holds " + " and ".join(counts)
    return text


def _count(number: int, kind: str) -> str:
    return f"{number} {kind} snapshot{'s' * (number != 1)}"
