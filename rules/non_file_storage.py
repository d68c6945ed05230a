from collections.abc import Iterator, Mapping

from auditor.model import DiskSource, FileFacts, Snapshot
from auditor.rule import Context, Violation, rule


@rule("SNAP003", "non-file-storage", "error", tags=("storage", "disk"))
def non_file_storage(snapshot: Snapshot, context: Context) -> Iterator[Violation]:
    """A captured disk or the saved memory state is not stored in a plain file.

    What it checks:
        Every disk the snapshot captures (its mode, as libvirt resolves it, is not `no`), one
        finding per disk: its source in the snapshot's embedded domain, or the overlay an
        external snapshot created, is not a file. A `type='volume'` disk is judged by the
        storage volume it names, looked up on the host: a volume of type `file` (a `dir`
        pool) is a file; `block`, `network`, `netdir`... are not, and a volume that cannot be
        looked up is reported with the reason. Any other type than `file` (block, network,
        nvme, dir, vhostuser, vhostvdpa) is not a file. When the host's files are checked, a
        disk declared `type='file'` whose path is a block device (or anything but a regular
        file) is not a file either.
        The memory state of `<memory snapshot='external' file=...>` (one finding per
        snapshot, no disk): with file checks, when that path is not a regular file; without
        them, when the path is under `/dev/`.

    Why:
        RHEL 10 supports snapshots only on file-based storage, memory state included. Block
        devices, network volumes and the like have no supported way to hold a libvirt
        snapshot chain.

    Noncompliant:
        <domainsnapshot>
          <state>running</state>
          <memory file='/dev/HostVG/GuestMemory'/>  <!-- external, on a logical volume -->
          <disks>
            <disk name='vda' snapshot='external' type='block'>
              <driver type='qcow2'/>
              <source dev='/dev/vg0/vm-snap1'/>
            </disk>
            <disk name='vdb' snapshot='internal'/>
          </disks>
          <domain type='kvm'>
            ...
            <disk type='volume' device='disk'>  <!-- a volume of a logical (LVM) pool -->
              <source pool='vg0' volume='vm-data'/>
              <target dev='vdb'/>
            </disk>
          </domain>
        </domainsnapshot>

    Compliant:
        <domainsnapshot>
          <state>running</state>
          <memory file='/var/lib/libvirt/images/vm.mem'/>  <!-- external, a regular file -->
          <disks>
            <disk name='vda' snapshot='external' type='file'>
              <driver type='qcow2'/>
              <source file='/var/lib/libvirt/images/vm.snap1'/>
            </disk>
            <disk name='vdb'><driver type='qcow2'/></disk>  <!-- external: a new file -->
          </disks>
          <domain type='kvm'>
            ...
            <disk type='volume' device='disk'>  <!-- a volume of a dir pool: a file -->
              <source pool='images' volume='vm-data.qcow2'/>
              <target dev='vdb'/>
            </disk>
          </domain>
        </domainsnapshot>

    Remediation:
        Move the VM's disks to file-based storage (for example `virsh blockcopy` to a qcow2
        file) before taking snapshots, or exclude the disk with `snapshot='no'` if it must
        stay where it is and its state does not need a restore point; save memory state to a
        regular file (`--memspec file=/var/lib/libvirt/images/VM.mem`).

    Reference:
        RHEL 10, "Support limitations for virtual machine snapshots".
        libvirt, Domain XML format: disk source types (https://libvirt.org/formatdomain.html#hard-drives-floppy-disks-cdroms).
        libvirt, Storage pools and volumes (https://libvirt.org/storage.html).
    """
    files = context.files
    for disk in snapshot.disks:
        if disk.mode == "no":
            continue
        # The source, else the overlay: one finding per disk. A file source with no file
        # facts to check it against is fine, and by far the most common case.
        for role, source in (("source", disk.state_image), ("external overlay", disk.overlay)):
            if source is None or (source.type == "file" and files is None):
                continue
            problem = _not_a_file(source, files)
            if problem:
                yield Violation(f"disk {disk.name}: {role} {problem}", disk=disk.name)
                break
    path = snapshot.memory_file
    if snapshot.memory != "external" or not path:
        return
    if context.files is None:
        if path.startswith("/dev/"):
            yield Violation(f"memory state is saved to {path}, a device path, not a file")
    elif kind := _wrong_kind(context.files.get(path)):
        yield Violation(f"memory state is saved to {path}, which is {kind}, not a file")


def _not_a_file(source: DiskSource | None, files: Mapping[str, FileFacts] | None) -> str | None:
    """Why SOURCE is not file storage, or None when it is (or cannot be judged)."""
    if source is None:
        return None
    if source.type == "volume":
        why = source.unresolved or "volumes are resolved only when a host is scanned"
        return f"is storage volume {source.volume}, which could not be resolved: {why}"
    if source.type != "file":
        volume = f", volume {source.volume}" if source.volume else ""
        return f"is {source.type} storage ({source.path}{volume}), not a file"
    kind = _wrong_kind(files.get(source.path)) if files is not None and source.path else None
    if not kind:
        return None
    if source.volume:
        return f"{source.path} (volume {source.volume}) is a file volume but is {kind}"
    return f"{source.path} is declared as a file but is {kind}"


_KINDS = {
    "block": "a block device",
    "char": "a character device",
    "directory": "a directory",
    "fifo": "a FIFO",
    "socket": "a socket",
}


def _wrong_kind(facts: FileFacts | None) -> str | None:
    if facts is None or not facts.exists or facts.file_type in (None, "file"):
        return None
    return _KINDS.get(facts.file_type, facts.file_type)
