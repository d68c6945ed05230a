from collections.abc import Iterator

from auditor.model import Snapshot
from auditor.rule import Context, Violation, rule


@rule("SNAP010", "broken-chain", "error", tags=("files", "external"))
def broken_chain(snapshot: Snapshot, context: Context) -> Iterator[Violation]:
    """An external snapshot's overlay no longer sits on the snapshot's saved state.

    What it checks:
        On hosts whose files can be seen: for every disk with `snapshot='external'` whose
        overlay exists, the overlay's backing chain (`qemu-img info --backing-chain`) must
        open, and must contain the snapshot's state image (the disk's source in the
        snapshot's embedded domain).

    Why:
        The overlay holds only what changed after the snapshot; the rest is read from its
        backing chain. A backing link rewritten by hand (`qemu-img rebase -u`), a moved or
        deleted backing file, or an overlay recreated from scratch silently detaches the
        snapshot from the state it claims to hold.

    Noncompliant:
        $ qemu-img info --backing-chain /var/lib/libvirt/images/vm.snap1
        qemu-img: Could not open backing file '/old/place/vm.qcow2': No such file or directory

    Compliant:
        $ qemu-img info --backing-chain /var/lib/libvirt/images/vm.snap1
        image: /var/lib/libvirt/images/vm.snap1
        backing file: /var/lib/libvirt/images/vm.qcow2
        image: /var/lib/libvirt/images/vm.qcow2

    Remediation:
        Point the overlay back at the snapshot's state image with
        `qemu-img rebase -u -b STATE_IMAGE -F qcow2 OVERLAY` once you have checked that
        STATE_IMAGE is the right file (its content must be exactly the snapshot's state),
        or restore the backing file to the path the overlay records.

    Reference:
        QEMU, qemu-img rebase (https://www.qemu.org/docs/master/tools/qemu-img.html).
        libvirt knowledge base, Domain state capture (https://libvirt.org/kbase/domainstatecapture.html).
    """
    if context.files is None:
        return
    for disk in snapshot.disks:
        overlay, state = disk.overlay, disk.state_image
        if not (overlay and overlay.type == "file" and state and state.type == "file"):
            continue
        facts = overlay.facts(context.files)
        if facts is None or not facts.exists:
            continue  # SNAP009 reports missing overlays
        if facts.file_type not in (None, "file", "block"):
            continue  # a FIFO, a directory...: SNAP003 reports it, and it holds no chain
        if facts.error:
            message = f"disk {disk.name}: backing chain of {overlay.path} cannot be opened: "
            yield Violation(message + facts.error, disk=disk.name, image=overlay.path)
        elif state.path not in facts.backing_chain:
            chain = " -> ".join(facts.backing_chain) or "no backing file"
            yield Violation(
                f"disk {disk.name}: overlay {overlay.path} is not backed by the snapshot's"
                f" state {state.path} (chain: {chain})",
                disk=disk.name,
                image=overlay.path,
            )
