from collections.abc import Iterator

from auditor.model import Domain
from auditor.rule import Context, Violation, rule


@rule("SNAP012", "unmanaged-overlay", "warning", tags=("files", "external"), scope="domain")
def unmanaged_overlay(domain: Domain, context: Context) -> Iterator[Violation]:
    """A domain's disk sits on an overlay that no snapshot metadata accounts for.

    What it checks:
        On hosts whose files can be seen: every image in the backing chain of a domain's
        current disk, except the base at the bottom, must be the overlay of one of the
        domain's external snapshots (its `<disks>` overlay, or one libvirt recorded in
        `<revertDisks>` when reverting to it). Any other overlay is reported with its disk
        and path.
        The finding's snapshot field is the overlay's path.

    Why:
        Overlays made by `virsh snapshot-create-as --disk-only --no-metadata`, by
        `qemu-img create -b`, or left behind when snapshot metadata was deleted are restore
        points nobody can list, revert to or clean up with libvirt, and every such layer
        slows the VM's reads. Linked clones built on a template image are reported too:
        waive them if that is how the VM was made.

    Noncompliant:
        $ qemu-img info --backing-chain /var/lib/libvirt/images/vm.nometa
        image: /var/lib/libvirt/images/vm.nometa      <- current disk, no snapshot made it
        backing file: /var/lib/libvirt/images/vm.qcow2

    Compliant:
        The current disk is the base image itself, or every overlay above the base is the
        overlay of a snapshot in `virsh snapshot-list VM`.

    Remediation:
        Keep what the overlay holds: it is usually the VM's current disk. Merge it into its
        backing file only when that file is no snapshot's saved state and no other VM's base:
        running, `virsh blockcommit VM DISK --active --shallow --pivot` (without `--shallow`
        it merges the whole chain into the base, snapshot states included); shut off,
        `qemu-img commit OVERLAY`, then point the disk at the backing file (`virsh edit VM`).
        Otherwise leave it and waive the finding, as for a linked clone on a template.

    Reference:
        libvirt, virsh blockcommit (https://libvirt.org/manpages/virsh.html#blockcommit).
        libvirt knowledge base, Domain state capture (https://libvirt.org/kbase/domainstatecapture.html).
    """
    if context.files is None:
        return
    accounted = {d.overlay.path for s in domain.snapshots for d in s.disks if d.overlay is not None}
    accounted.update(path for s in domain.snapshots for path in s.revert_overlays)
    for disk in domain.disks:
        if disk.source is None or disk.source.type != "file":
            continue
        facts = disk.source.facts(context.files)
        if facts is None or not facts.exists or facts.error:
            continue  # nothing to tell without a readable chain
        chain = (facts.path, *facts.backing_chain)
        for image in chain[:-1]:
            if image not in accounted:
                yield Violation(
                    f"disk {disk.name}: overlay {image} is not the overlay of any snapshot",
                    disk=disk.name,
                    image=image,
                )
