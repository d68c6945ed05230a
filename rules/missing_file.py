from collections.abc import Iterator, Mapping

from auditor.model import FileFacts, Snapshot
from auditor.rule import Context, Violation, rule


@rule("SNAP009", "missing-file", "error", tags=("files", "external"))
def missing_file(snapshot: Snapshot, context: Context) -> Iterator[Violation]:
    """A file the snapshot's metadata names does not exist.

    What it checks:
        On hosts whose files can be seen (local connections, or `scan --check-files`): the
        external overlay of every disk with `snapshot='external'` on file storage must exist
        when the snapshot is the current one or has children (libvirt deletes the overlay
        of a childless snapshot when the VM reverts elsewhere: that is not damage), and the
        memory file of `<memory snapshot='external'>` must always exist.

    Why:
        An external snapshot is only as good as its files. A deleted overlay or memory file
        makes the restore point (and often the VM's current disk) unusable, while libvirt
        keeps listing the snapshot as if nothing had happened.

    Noncompliant:
        <domainsnapshot>
          <memory snapshot='external' file='/var/lib/libvirt/images/vm.mem'/>  <!-- deleted -->
          <disks>
            <disk name='vda' snapshot='external' type='file'>
              <source file='/var/lib/libvirt/images/vm.snap1'/>  <!-- deleted -->
            </disk>
          </disks>
        </domainsnapshot>

    Compliant:
        The same metadata, with both files present.

    Remediation:
        Restore the missing file from backup. If it is lost for good, the snapshot cannot be
        reverted to: remove its metadata with `virsh snapshot-delete VM NAME --metadata`, and
        repair the VM's disk chain if the overlay was its current disk.

    Reference:
        libvirt, Snapshot XML format: external snapshots (https://libvirt.org/formatsnapshot.html).
        libvirt knowledge base, Domain state capture (https://libvirt.org/kbase/domainstatecapture.html).
    """
    if context.files is None:
        return
    # Reverting discards the changes made after the current snapshot, and libvirt deletes
    # the overlay that held them: a missing overlay matters only where other images still
    # build on it (the snapshot has children) or it holds the VM's present (current).
    in_use = snapshot.current or snapshot.has_children
    for disk in snapshot.disks:
        overlay = disk.overlay
        if in_use and overlay and overlay.type == "file" and _missing(context.files, overlay.path):
            yield Violation(
                f"disk {disk.name}: external overlay {overlay.path} does not exist",
                disk=disk.name,
                image=overlay.path,
            )
    if snapshot.memory == "external" and _missing(context.files, snapshot.memory_file):
        yield Violation(
            f"memory file {snapshot.memory_file} does not exist", image=snapshot.memory_file
        )


def _missing(files: Mapping[str, FileFacts], path: str | None) -> bool:
    facts = files.get(path) if path else None
    return facts is not None and not facts.exists
