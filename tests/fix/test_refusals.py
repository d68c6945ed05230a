"""What `snapaudit fix` refuses, and the exact plan lines and exit codes that say so, on a real
libvirtd. Nothing refused is changed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import libvirt
import pytest

from auditor.display import human_size
from auditor.fix.domain_lock import domain_lock
from testlab.pytest_fixtures import require
from testlab.trees import SnapshotTree
from tests.helpers import run_cli

pytestmark = pytest.mark.qemu


def one_snapshot(conn: libvirt.virConnect, name: str, directory: Path) -> SnapshotTree:
    tree = SnapshotTree(conn, name, directory)
    tree.write("vda", 0, 0x5A)
    tree.snapshot("one")
    return tree


def block_disk_domain(conn: libvirt.virConnect, directory: Path) -> None:
    """vda on a qcow2 file, vdb on a block device, and internal snapshot metadata for both
    (REDEFINE writes metadata only: no block device is needed)."""
    tree = SnapshotTree(conn, "on-block", directory)
    xml = tree.dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE).replace(
        "</devices>",
        "<disk type='block' device='disk'><driver name='qemu' type='qcow2'/>"
        "<source dev='/dev/snapaudit-no-such-device'/><target dev='vdb' bus='virtio'/></disk>"
        "</devices>",
    )
    dom = conn.defineXML(xml)
    snapshot = (
        "<domainsnapshot><name>one</name><state>shutoff</state>"
        "<creationTime>1700000000</creationTime><memory snapshot='no'/><disks>"
        "<disk name='vda' snapshot='internal'/><disk name='vdb' snapshot='internal'/></disks>"
        f"{dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)}</domainsnapshot>"
    )
    dom.snapshotCreateXML(snapshot, libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE)


def manual_disk_domain(conn: libvirt.virConnect, directory: Path) -> None:
    """An internal snapshot, then one whose disk was left to be snapshotted by hand
    (metadata only: libvirt records what the user said was done)."""
    tree = one_snapshot(conn, "manual", directory)
    snapshot = (
        "<domainsnapshot><name>by-hand</name><state>disk-snapshot</state>"
        "<parent><name>one</name></parent><creationTime>1700000100</creationTime>"
        "<memory snapshot='no'/><disks><disk name='vda' snapshot='manual'/></disks>"
        f"{tree.dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)}</domainsnapshot>"
    )
    flags = (
        libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE | libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY
    )
    tree.dom.snapshotCreateXML(snapshot, flags)


def test_refusals_each_with_itsfailure(conn, libvirtd, tmp_path):
    images = tmp_path / "images"
    running = one_snapshot(conn, "running", images)
    running.dom.create()
    paused = one_snapshot(conn, "paused", images)
    paused.dom.create()
    paused.dom.suspend()
    block_disk_domain(conn, images)
    memory = SnapshotTree(conn, "with-memory", images)
    memory.snapshot_live("live")
    stranded = one_snapshot(conn, "stranded", images)
    subprocess.run(["qemu-img", "snapshot", "-c", "hidden", stranded.images["vda"]], check=True)
    manual_disk_domain(conn, images)
    names = ("running", "paused", "on-block", "with-memory", "stranded", "manual")
    before = {name: conn.lookupByName(name).XMLDesc(0) for name in names}

    args = [arg for name in names for arg in ("--domain", name)]
    proc = run_cli("fix", "-c", libvirtd.uri, "--state-dir", str(tmp_path / "state"), *args)
    assert (proc.returncode, proc.stderr) == (1, "")
    vda = images / "on-block-0.qcow2"
    hidden = stranded.images["vda"]
    virsh = f"virsh -c '{libvirtd.uri}'"  # the URI holds a '?': quoted for the shell
    assert proc.stdout == (
        f"snapaudit fix on {libvirtd.uri} (dry run, nothing is changed: add --apply to convert)\n"
        "\n"
        "domain 'running': refused\n"
        f"  - domain is running: shut it down ({virsh} shutdown running; a guest that ignores"
        f" the request needs {virsh} destroy running, which cuts its power) and rerun\n"
        "\n"
        "domain 'paused': refused\n"
        f"  - domain is paused: shut it down ({virsh} shutdown paused; a guest that ignores"
        f" the request needs {virsh} destroy paused, which cuts its power) and rerun\n"
        "\n"
        "domain 'on-block': refused\n"
        "  - disk vdb is not on file storage (block /dev/snapaudit-no-such-device): only "
        "file-based images can be converted\n"
        f"  - image {vda} has no internal snapshot 'one'\n"
        "\n"
        "domain 'with-memory': refused\n"
        "  - snapshot 'live' holds the guest's memory (internal): add --drop-memory to keep "
        "only its disks, as a crash-consistent disk-only snapshot\n"
        "\n"
        "domain 'stranded': refused\n"
        f"  - image {hidden} holds internal snapshot 'hidden', which libvirt does not list: "
        "converting would strand it\n"
        "\n"
        "domain 'manual': refused\n"
        "  - snapshot 'by-hand' leaves disk vda to be snapshotted by hand (snapshot='manual'): "
        "its state is in no image libvirt knows; delete that snapshot (virsh snapshot-delete "
        "manual by-hand --metadata) and rerun\n"
        "\n"
        "6 domains: 6 refused\n"
    )
    # --apply refuses the same way, and changes nothing.
    applied = run_cli(
        "fix", "-c", libvirtd.uri, "--state-dir", str(tmp_path / "state"), *args, "--apply"
    )
    assert applied.returncode == 1
    assert applied.stdout.endswith("\n6 domains: 6 refused\n")
    assert {name: conn.lookupByName(name).XMLDesc(0) for name in names} == before
    # A domain the host does not have is a usage error, before anything is planned.
    unknown = run_cli("fix", "-c", libvirtd.uri, *args, "--domain", "nowhere", "--apply")
    assert (unknown.returncode, unknown.stdout, unknown.stderr) == (
        2,
        "",
        f"snapaudit: --domain 'nowhere': no such domain on {libvirtd.uri}\n",
    )
    assert not (tmp_path / "state").exists() or not list((tmp_path / "state").glob("*.journal"))


def test_not_enough_free_space(conn, libvirtd, tmp_path):
    require(shutil.which("unshare"), "unshare (util-linux) is needed for a private tmpfs")
    tree = SnapshotTree(conn, "crowded", tmp_path / "images")
    tree.write("vda", 0, 0x61, 4)
    tree.snapshot("one")
    plan = run_cli("fix", "-c", libvirtd.uri, "--domain", "crowded", "--format", "json")
    (needed,) = json.loads(plan.stdout)["domains"][0]["space"]

    # A 1 MiB tmpfs, mounted in a private mount namespace only the fix process sees.
    small = tmp_path / "small"
    small.mkdir()
    fix = [str(Path(sys.executable).parent / "snapaudit"), "fix", "-c", libvirtd.uri]
    fix += ["--domain", "crowded", "--target-dir", str(small), "--apply"]
    script = f'mount -t tmpfs -o size=1M,mode=0755 tmpfs "{small}" && exec "$@"'
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *fix],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1, proc.stderr
    assert (
        "domain 'crowded': refused\n"
        f"  - not enough free space in {small}: {human_size(needed['needed'])} needed, "
        "1.0 MiB available\n"
    ) in proc.stdout
    assert list(small.iterdir()) == []


def test_read_only_and_remote_connections_are_refused(libvirtd):
    proc = run_cli("fix", "-c", libvirtd.ro_uri)
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        2,
        "",
        f"snapaudit: fix needs a read-write connection: {libvirtd.ro_uri} is read-only "
        "(connect to the daemon's read-write socket, as root)\n",
    )
    # Refused before any connection is attempted.
    remote = "qemu+ssh://root@hv1.example.invalid/system"
    proc = run_cli("fix", "-c", remote)
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        2,
        "",
        "snapaudit: fix runs qemu-img on the images itself, so it needs a local QEMU "
        f"connection; {remote} is not one (run snapaudit fix on the hypervisor host)\n",
    )


def test_a_domain_being_fixed_is_locked(conn, libvirtd, tmp_path):
    tree = one_snapshot(conn, "locked", tmp_path / "images")
    state = tmp_path / "state"
    with domain_lock(tree.dom.UUIDString()) as lock:
        proc = run_cli(
            "fix", "-c", libvirtd.uri, "--state-dir", str(state), "--domain", "locked", "--apply"
        )
    assert proc.returncode == 1
    assert (
        "domain 'locked': refused\n"
        f"  - another snapaudit fix is working on this domain (lock {lock})\n"
    ) in proc.stdout
    assert not list(state.glob("*.journal"))


@pytest.mark.parametrize(
    "args",
    [
        ["--resume", "j", "--rollback", "j"],
        ["--resume", "j", "--apply"],
        ["--rollback", "j", "--domain", "x"],
    ],
)
def test_journal_options_do_not_mix(args):
    proc = run_cli("fix", *args)
    assert proc.returncode == 2
    assert proc.stderr.startswith("snapaudit: --")


def test_a_failure_names_the_one_command_that_applies():
    from types import SimpleNamespace

    from auditor.fix.execute import FixFailed
    from auditor.fix.journal import JournalError
    from auditor.fix.orchestrate import failure

    journal = SimpleNamespace(path=Path("/var/lib/snapaudit/fix/vm.journal"))
    full = OSError(28, "No space left on device", "/var/lib/snapaudit/fix/vm.journal")
    assert failure(JournalError(f"cannot write journal {journal.path}: full"), journal) == (
        "cannot write journal /var/lib/snapaudit/fix/vm.journal: full; once the journal can be "
        "written, run snapaudit fix --resume /var/lib/snapaudit/fix/vm.journal"
    )
    assert failure(full, journal, "--rollback") == (
        "/var/lib/snapaudit/fix/vm.journal: No space left on device; once that is solved, run "
        "snapaudit fix --rollback /var/lib/snapaudit/fix/vm.journal"
    )
    # A FixFailed says itself what applies, or that nothing does.
    done = FixFailed("/var/lib/snapaudit/fix/vm.journal was rolled back; plan a new fix instead")
    assert failure(done, journal) == str(done)
    assert failure(full) == "/var/lib/snapaudit/fix/vm.journal: No space left on device"


def test_an_error_reads_in_its_own_words_whatever_its_class_is_named():
    from auditor.display import one_line
    from auditor.fix.images import ImageError
    from auditor.safefs import WriteError

    class libvirtError(Exception):  # named as libvirt's, and not one of them
        pass

    not_found = libvirt.libvirtError("Domain not found: no domain with matching name 'x'\n")
    assert one_line(not_found) == "Domain not found: no domain with matching name 'x'"
    assert one_line(ImageError("qemu-img convert: Could not open 'a'")) == (
        "qemu-img convert: Could not open 'a'"
    )
    written = WriteError("cannot create /a: something is already there")
    assert one_line(written) == "cannot create /a: something is already there"
    assert one_line(OSError(28, "No space left on device", "/j")) == "/j: No space left on device"
    # Anything else is a bug: its type is the first clue, whatever it is called.
    assert one_line(KeyError("x")) == "KeyError: 'x'"
    assert one_line(libvirtError("x")) == "libvirtError: x"
