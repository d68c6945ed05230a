import os
from collections.abc import Iterator

from auditor.display import human_size
from auditor.model import Domain, unreferenced_in
from auditor.rule import Context, Violation, rule


@rule("SNAP018", "orphaned-overlay", "warning", tags=("files", "external"), scope="domain")
def orphaned_overlay(domain: Domain, context: Context) -> Iterator[Violation]:
    """An overlay of one of the domain's images lies beside them, used by nothing.

    What it checks:
        On hosts whose files can be seen: every qcow2 image in a directory that holds one of
        the domain's images (its disks, its snapshots' overlays and state images), whose
        backing chain reaches one of those images, and that no domain on the host
        names (disks or snapshots of every domain, and their backing chains: linked clones of
        a shared template are not orphans). Files fix mode is still writing (`.part`) are
        left alone. One finding per file, naming the file and its size (in bytes of the
        file). Each directory is
        listed once; only regular files are opened (`lstat` first, then `O_NOFOLLOW` and
        `O_NONBLOCK`, so a symlink or a FIFO is never followed or waited on), and only their
        qcow2 headers are read.

    Why:
        Deleting an external snapshot after reverting away from it leaves its overlay on
        disk, referenced by nothing (libvirt 11.3: `int1 -> ext1`, revert to `int1`, delete
        `ext1`), and failed or hand-made snapshot operations leave more. Such files hold
        disk space and stale guest data nobody will clean up; RVTools reports the same thing
        as "zombie VMDKs" on VMware.

    Noncompliant:
        $ ls /var/lib/libvirt/images
        vm.qcow2  vm.ext1                  <- vm.ext1: backing file vm.qcow2
        $ virsh domblklist vm; virsh snapshot-list vm    # (neither names vm.ext1)

    Compliant:
        Every overlay in the directory is a domain's disk, a snapshot's overlay or state
        image, or in the backing chain of one.

    Remediation:
        If the file holds a state you need, copy it out first with
        `qemu-img convert -O qcow2 FILE OUT` (which reads its backing chain). Then, once
        nothing outside libvirt uses it (`qemu-img info` it, look for other hypervisors or
        backups sharing the directory), remove it.

    Reference:
        libvirt knowledge base, Internals of snapshots (https://libvirt.org/kbase/snapshots.html).
        RVTools, vHealth zombie files (https://www.robware.net/rvtools/).
    """
    if context.files is None:
        return
    # The images the domain names itself: a template below them belongs to every clone, and
    # an overlay on it to none in particular.
    mine = {s.path for s in domain.disk_sources() if s.type == "file" and s.path}
    directories = {os.path.dirname(p) for p in mine}
    for path in unreferenced_in(context.files, directories):
        facts = context.files[path]
        below = next((p for p in facts.backing_chain if p in mine), None)
        if below is not None:
            yield Violation(
                f"image {path} ({human_size(facts.size)}) is used by no domain; its backing "
                f"chain reaches {below}",
                image=path,
            )
