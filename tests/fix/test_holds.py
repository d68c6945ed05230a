"""What keeps a conversion and the world apart, on the real lab: QEMU's image locks held by fix
(the domain cannot start on its originals, no writer can open them), a writer that holds an
image when rollback wants it, a domain started once it runs on its new images, and the child
processes of fix (a killed child is named with its signal; a killed fix takes its children
with it and its NBD socket directories are removed by the next run).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import libvirt
import pytest

from auditor.fix import image_hold
from testlab.trees import SnapshotTree, disk_sources, read_back
from tests.fix.scenario import Scenario, wait_stopped
from tests.helpers import run_cli, start_cli

pytestmark = pytest.mark.qemu
HELD = "is open for writing by another process (a running guest, qemu-io or qemu-nbd)"


def children(pid: int, name: str) -> list[int]:
    """The live processes whose parent is PID and whose command line starts with NAME
    (a program, then maybe a subcommand: "qemu-img convert")."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            _, rest = (entry / "stat").read_text().rsplit(")", 1)
        except (OSError, ValueError):
            continue
        state, ppid = rest.split()[:2]
        if int(ppid) != pid or state == "Z":
            continue
        with contextlib.suppress(OSError):
            args = (entry / "cmdline").read_bytes().split(b"\0")
            if b" ".join([os.path.basename(args[0]), *args[1:]]).startswith(name.encode()):
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for_child(proc: subprocess.Popen, name: str) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = children(proc.pid, name)
        if found:
            return found[0]
        assert proc.poll() is None, f"fix ended before running {name}: {proc.communicate()}"
        time.sleep(0.001)
    raise AssertionError(f"fix never ran {name}")


def big_tree(conn: libvirt.virConnect, name: str, directory: Path) -> SnapshotTree:
    """One 256 MiB disk, all written: converting its snapshot takes a while."""
    tree = SnapshotTree(conn, name, directory, size_mib=256)
    tree.write("vda", 0, 0x11, 256)
    tree.snapshot("s1")
    tree.write("vda", 0, 0x22)
    return tree


def apply(uri: str, state: Path, name: str) -> subprocess.Popen:
    args = ["-c", uri, "--state-dir", str(state), "--domain", name, "--apply"]
    return start_cli("fix", *args)


def failed_line(name: str, error: str, journal: Path) -> str:
    return f"  FAILED: {error}; journal {journal}"


# QEMU's image locks, held by fix


@pytest.mark.parametrize("where", ["1", "9+", "13+"])  # first record; all verified; before define
def test_while_fix_holds_the_originals_nothing_opens_them_for_writing(
    conn,
    libvirtd,
    tmp_path,
    where,
):
    scenario = Scenario(libvirtd.uri, tmp_path / f"hold-{where.replace('+', 'p')}")
    try:
        proc = scenario.apply({"SNAPAUDIT_FIX_FAULT_AT": where, "SNAPAUDIT_FIX_FAULT": "stop"})
        assert wait_stopped(proc)
        try:
            with pytest.raises(libvirt.libvirtError, match='Failed to get "write" lock'):
                scenario.tree.dom.create()
            write = ["qemu-io", "-f", "qcow2", "-c", "write -P 0x77 0 64k"]
            writer = subprocess.run([*write, str(scenario.original)], capture_output=True)
            assert writer.returncode == 1
            assert b'Failed to get "write" lock' in writer.stderr
        finally:
            proc.send_signal(signal.SIGCONT)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, out + err
        assert scenario.check("--resume") == []  # every state exact: nothing was written
    finally:
        scenario.close()


def test_a_domain_started_on_its_new_images_is_reported_running(conn, libvirtd, tmp_path):
    scenario = Scenario(libvirtd.uri, tmp_path / "started")
    try:
        # Stopped right after define-domain is journaled: the domain can start, on its new
        # images; the next step (removing the original) must not run under it.
        proc = scenario.apply({"SNAPAUDIT_FIX_FAULT_AT": "14+", "SNAPAUDIT_FIX_FAULT": "stop"})
        assert wait_stopped(proc)
        try:
            scenario.tree.dom.create()
        finally:
            proc.send_signal(signal.SIGCONT)
        out, _ = proc.communicate(timeout=120)
        journal = scenario.journal()
        error = (
            f"domain {scenario.root.name} is running (on its converted images): shut it down, "
            f"then run snapaudit fix --resume {journal}"
        )
        assert proc.returncode == 3
        assert failed_line(scenario.root.name, error, journal) in out.splitlines()
        assert scenario.original.exists()
        scenario.tree.dom.destroy()
        assert run_cli("fix", "--resume", str(journal)).returncode == 0
        assert scenario.check("--resume") == []
    finally:
        scenario.close()


def test_metadata_changed_before_an_original_goes_names_only_rollback(conn, libvirtd, tmp_path):
    scenario = Scenario(libvirtd.uri, tmp_path / "changed")
    try:
        proc = scenario.apply({"SNAPAUDIT_FIX_FAULT_AT": "14+", "SNAPAUDIT_FIX_FAULT": "stop"})
        assert wait_stopped(proc)
        try:  # someone makes s1 the current snapshot
            s1 = scenario.tree.dom.snapshotLookupByName("s1")
            flags = libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE
            flags |= libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT
            scenario.tree.dom.snapshotCreateXML(s1.getXMLDesc(), flags)
        finally:
            proc.send_signal(signal.SIGCONT)
        out, _ = proc.communicate(timeout=120)
        journal = scenario.journal()
        error = (
            f"snapshot 's1' has the wrong current flag: only snapaudit fix --rollback {journal} "
            "applies"
        )
        assert proc.returncode == 3
        assert failed_line(scenario.root.name, error, journal) in out.splitlines()
        assert "--resume" not in out
        assert scenario.original.exists()
        done = run_cli("fix", "--rollback", str(journal))
        assert done.returncode == 0, done.stdout
        assert scenario.check("--rollback") == []
    finally:
        scenario.close()


# A writer holding an image when rollback wants it


def hold_for_writing(how: str, image: Path, directory: Path) -> subprocess.Popen:
    """A process that holds IMAGE open for writing until it is ended."""
    if how == "qemu-io":
        args = ["qemu-io", "-f", "qcow2", str(image)]  # interactive: waits for commands
    else:
        args = ["qemu-nbd", "-f", "qcow2", "--socket", str(directory / "nbd.sock"), str(image)]
    holder = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    # Ready once it holds QEMU's write lock; asked without taking a lock (opening the image
    # with a qemu tool to probe would itself keep the holder from taking it).
    fd = os.open(image, os.O_RDONLY)
    try:
        while not image_hold.writer(fd):
            assert time.monotonic() < deadline and holder.poll() is None, "the holder never held"
            time.sleep(0.02)
    finally:
        os.close(fd)
    return holder


@pytest.mark.parametrize("how", ["qemu-io", "qemu-nbd"])
def test_rollback_of_an_original_held_for_writing_waits_for_it(conn, libvirtd, tmp_path, how):
    scenario = Scenario(libvirtd.uri, tmp_path / f"held-{how}")
    try:
        scenario.apply({"SNAPAUDIT_FIX_FAULT_AT": "7"}).communicate(timeout=120)
        journal = scenario.journal()
        holder = hold_for_writing(how, scenario.original, tmp_path)
        try:
            held = run_cli("fix", "--rollback", str(journal))
        finally:
            holder.terminate()
            holder.communicate(timeout=30)
        error = f"{scenario.original} {HELD}: stop it first, then run snapaudit fix --rollback"
        assert (held.returncode, held.stdout, held.stderr) == (
            3,
            f"domain '{scenario.root.name}': FAILED: {error} {journal}\n",
            "",
        )
        done = run_cli("fix", "--rollback", str(journal))
        assert done.returncode == 0, done.stdout + done.stderr
        assert scenario.check("--rollback") == []
    finally:
        scenario.close()


# Child processes


def test_a_killed_child_is_named_with_its_signal(conn, libvirtd, tmp_path):
    tree = big_tree(conn, "killed-child", tmp_path / "images")
    proc = apply(libvirtd.uri, tmp_path / "state", "killed-child")
    os.kill(wait_for_child(proc, "qemu-img convert"), signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    (journal,) = (tmp_path / "state").glob("*.journal")
    error = (
        "step 1 (create-image) failed: qemu-img convert: killed by SIGKILL; once that is "
        f"solved, run snapaudit fix --resume {journal}"
    )
    assert proc.returncode == 3
    assert failed_line("killed-child", error, journal) in out.splitlines()
    assert "Traceback" not in err and "Error:" not in out
    assert run_cli("fix", "--resume", str(journal)).returncode == 0
    assert read_back(disk_sources(tree.dom.XMLDesc())["vda"], tree.now["vda"]) == []


@pytest.mark.parametrize(
    "during, step",
    [("qemu-img rebase", "step 3 (create-image)"), ("qemu-img compare", "step 2 (verify-image)")],
)
def test_a_killed_nbd_server_is_named_with_its_signal(conn, libvirtd, tmp_path, during, step):
    """The tool reading the export then fails too, on a refused connection or an I/O error:
    the cause is the server's death, and that is what is reported."""
    tree = big_tree(conn, "killed-nbd", tmp_path / "images")
    proc = apply(libvirtd.uri, tmp_path / "state", "killed-nbd")
    wait_for_child(proc, during)  # it reads the export all along: 256 MiB
    os.kill(wait_for_child(proc, "qemu-nbd"), signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    (journal,) = (tmp_path / "state").glob("*.journal")
    error = (
        f"{step} failed: qemu-nbd: killed by SIGKILL; once that is solved, "
        f"run snapaudit fix --resume {journal}"
    )
    assert proc.returncode == 3
    assert failed_line("killed-nbd", error, journal) in out.splitlines(), out
    assert "Traceback" not in err and "Error:" not in out
    assert run_cli("fix", "--resume", str(journal)).returncode == 0
    assert read_back(disk_sources(tree.dom.XMLDesc())["vda"], tree.now["vda"]) == []


def test_a_killed_fix_takes_its_children_with_it(conn, libvirtd, tmp_path):
    tree = big_tree(conn, "killed-fix", tmp_path / "images")
    proc = apply(libvirtd.uri, tmp_path / "state", "killed-fix")
    child = wait_for_child(proc, "qemu-img convert")
    # Stopped, the child would stay forever if nothing killed it with its parent.
    os.kill(child, signal.SIGSTOP)
    proc.kill()
    proc.communicate()
    deadline = time.monotonic() + 2
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not alive(child), "qemu-img convert outlived the killed fix"
    (journal,) = (tmp_path / "state").glob("*.journal")
    done = run_cli("fix", "--resume", str(journal))  # at once
    assert done.returncode == 0, done.stdout
    for name, states in tree.states.items():
        xml = tree.dom.snapshotLookupByName(name).getXMLDesc()
        assert read_back(disk_sources(xml, "domain")["vda"], states["vda"]) == []
    assert read_back(disk_sources(tree.dom.XMLDesc())["vda"], tree.now["vda"]) == []
    assert sorted(p.name for p in (tmp_path / "images").iterdir() if ".part" in p.name) == []


@pytest.mark.parametrize("then", ["--resume", "--rollback"])
def test_the_socket_directories_of_a_killed_fix_are_removed_by_the_next(
    conn,
    libvirtd,
    tmp_path,
    then,
):
    scenario = Scenario(libvirtd.uri, tmp_path / f"sockets{then}")
    try:
        proc = scenario.apply({})
        wait_for_child(proc, "qemu-nbd")  # the second image is made on an NBD export
        proc.kill()
        proc.communicate()
        left = sorted(Path("/tmp").glob(f"snapaudit-nbd-{proc.pid}-*"))
        assert len(left) == 1 and left[0].is_dir()
        done = run_cli("fix", then, str(scenario.journal()))
        assert done.returncode == 0, done.stdout
        assert sorted(Path("/tmp").glob(f"snapaudit-nbd-{proc.pid}-*")) == []
        assert scenario.check(then) == []
    finally:
        scenario.close()


def test_the_socket_directories_of_a_killed_fix_are_removed_by_any_next_apply(
    conn,
    libvirtd,
    tmp_path,
):
    """Even by one that serves nothing over NBD: here the domain is running, so refused."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = Path(f"/tmp/snapaudit-nbd-{dead.pid}-killed")
    stale.mkdir(mode=0o700)
    (stale / "nbd.sock").touch()
    scenario = Scenario(libvirtd.uri, tmp_path / "refused")
    try:
        scenario.tree.dom.create()
        proc = scenario.apply({})
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 1, out
        assert not stale.exists()
    finally:
        scenario.tree.dom.destroy()
        scenario.close()
        if stale.exists():
            shutil.rmtree(stale)
