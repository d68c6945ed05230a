from collections.abc import Iterator, Mapping

from auditor.model import Domain, FileFacts
from auditor.rule import Context, Violation, rule


@rule("SNAP011", "unmanaged-internal", "error", tags=("files", "internal"), scope="domain")
def unmanaged_internal(domain: Domain, context: Context) -> Iterator[Violation]:
    """A domain's image holds internal snapshots that libvirt has no metadata for.

    What it checks:
        On hosts whose files can be seen: every qcow2 image a domain uses (its current disks
        and their backing chains, and its snapshots' images) is listed with `qemu-img info`,
        and every internal snapshot tag that is not the name of one of the domain's libvirt
        snapshots is reported, one finding per image and tag. The finding's snapshot field
        is `IMAGE@TAG`.

    Why:
        Snapshots taken with `virsh snapshot-create-as --no-metadata` or `qemu-img snapshot
        -c` are invisible to `virsh snapshot-list` and to every metadata-only audit, yet they
        are deprecated internal snapshots all the same, and they pin old data in the image.

    Noncompliant:
        $ qemu-img snapshot -l /var/lib/libvirt/images/vm.qcow2
        ID  TAG           VM SIZE  DATE                 VM CLOCK      ICOUNT
        1   before-patch  0 B      2026-11-02 10:00:00  00:00:00.000  0
        $ virsh snapshot-list vm    # (no snapshot named before-patch)

    Compliant:
        $ qemu-img snapshot -l /var/lib/libvirt/images/vm.qcow2    # (no snapshots)

    Remediation:
        With the VM shut off: if the state is still needed, copy it out as an image of its own
        (`qemu-img convert -O qcow2 -l snapshot.name=TAG IMAGE OUT`), then delete the tag
        (`qemu-img snapshot -d TAG IMAGE`). `snapaudit fix` refuses a domain whose images hold
        such tags, as converting would strand them.

    Reference:
        QEMU, qemu-img snapshot (https://www.qemu.org/docs/master/tools/qemu-img.html).
        RHEL 10, "Support limitations for virtual machine snapshots".
    """
    if context.files is None:
        return
    known = {s.name for s in domain.snapshots}
    for image in _images(domain, context.files):
        for tag in context.files[image].internal_snapshots:
            if tag not in known:
                yield Violation(
                    f"image {image} holds internal snapshot {tag!r} that libvirt has no"
                    " metadata for",
                    disk=_disk_using(domain, image, context.files),
                    image=image,
                    tag=tag,
                )


def _images(domain: Domain, files: Mapping[str, FileFacts]) -> list[str]:
    """Every image of the domain that was inspected: current disks with their backing chains,
    and each snapshot's overlay and state images; sorted, each once."""
    paths: set[str] = set()
    for source in domain.disk_sources():
        facts = source.facts(files) if source.type == "file" else None
        if facts is not None and facts.exists:
            paths.add(facts.path)
            paths.update(p for p in facts.backing_chain if p in files)
    return sorted(paths)


def _disk_using(domain: Domain, image: str, files: Mapping[str, FileFacts]) -> str | None:
    for disk in domain.disks:
        facts = disk.source.facts(files) if disk.source else None
        if facts is not None and image in (facts.path, *facts.backing_chain):
            return disk.name
    return None
