"""Output files written as root: devices and FIFOs are written through, never replaced;
symlinks planted by another user are refused; modes and owners are kept; every output path is
checked before the scan; fix mode's new images cannot be redirected by a symlink swap."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import libvirt
import pytest

from auditor import safefs
from auditor.fix import images
from auditor.safefs.chase import descriptor
from testlab.images import create_qcow2, write_pattern
from testlab.pytest_fixtures import require, require_qemu_tools
from testlab.trees import SnapshotTree, removed_afterwards
from tests.helpers import NOBODY, SNAPAUDIT, needs_root, pinned, run_cli

SCAN = ("scan", "--demo", "--fail-on", "never")


@pytest.fixture(scope="module")
def report() -> str:
    """The demo host's JSON report, as it goes to standard output."""
    proc = run_cli(*SCAN, "-f", "json")
    assert proc.returncode == 0
    return proc.stdout


def mknod(path: Path, major: int, minor: int) -> Path:
    needs_root()
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(major, minor))
    return path


def test_a_device_is_written_through_not_replaced(tmp_path: Path):
    # A twin of /dev/null: a regression must not break the machine's own.
    null = mknod(tmp_path / "null", 1, 3)
    proc = run_cli(*SCAN, "-f", "json", "-o", str(null))
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    proc = run_cli(*SCAN, "-f", f"sarif:{null}", "-f", f"junit:{null}", "--write-baseline", null)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert stat.S_ISCHR(null.lstat().st_mode)
    assert os.listdir(tmp_path) == ["null"]  # no temporary file left beside it


def test_a_fifo_is_written_through(tmp_path: Path, report: str):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()), daemon=True)
    reader.start()
    proc = run_cli(*SCAN, "-f", f"json:{fifo}")
    reader.join(30)
    if reader.is_alive():  # nothing was written to the FIFO: let the reader go
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(30)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert received == [report]
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


def test_a_fifo_planted_by_another_user_is_refused(tmp_path: Path):
    # Written through, it would hand root's report to its owner, or hang the scan for good.
    needs_root()
    public = tmp_path / "public"
    public.mkdir()
    public.chmod(0o1777)
    fifo = public / "r.json"
    os.mkfifo(fifo)
    os.chown(fifo, NOBODY, NOBODY)
    proc = run_cli(*SCAN, "-f", "json", "-o", str(fifo))
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == (
        f"snapaudit: cannot write {fifo}: FIFO {fifo} belongs to uid {NOBODY}, neither root "
        "nor the invoking user\n"
    )
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


def test_standard_output_by_name(tmp_path: Path, report: str):
    stdout = tmp_path / "stdout"
    stdout.symlink_to("/dev/stdout")  # a twin again, root's own link
    proc = run_cli(*SCAN, "-f", f"json:{stdout}")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, report, "")
    assert stdout.is_symlink()
    for name, fd in [
        ("/dev/stdout", 1),
        ("/dev/stderr", 2),
        ("/dev/fd/5", 5),
        ("/proc/self/fd/1", 1),
    ]:
        assert descriptor(name) == fd


@pytest.mark.parametrize("planted_by", ["link", "directory"])
def test_a_symlink_planted_by_another_user_is_refused(tmp_path: Path, planted_by: str):
    needs_root()
    victim = tmp_path / "shadow"
    victim.write_bytes(b"root:secret\n")
    victim.chmod(0o600)
    public = tmp_path / "public"
    public.mkdir(mode=0o1777)
    public.chmod(0o1777)
    link = public / "r.json"
    link.symlink_to(victim)
    if planted_by == "link":
        os.lchown(link, NOBODY, NOBODY)
        why = f"symlink {link} belongs to uid {NOBODY}"
    else:
        os.chown(public, NOBODY, NOBODY)
        why = f"{public} belongs to uid {NOBODY}"
    other = tmp_path / "other.json"
    for args in (
        ("-f", "json", "-o", str(link)),
        ("-f", f"json:{other}", "--write-baseline", str(link)),
    ):
        proc = run_cli(*SCAN, *args)
        assert (proc.returncode, proc.stdout) == (2, "")
        assert proc.stderr == (
            f"snapaudit: cannot write {link}: {why}, neither root nor the invoking user\n"
        )
        assert victim.read_bytes() == b"root:secret\n"
        assert stat.S_IMODE(victim.stat().st_mode) == 0o600
        assert link.is_symlink() and not other.exists()


def test_an_own_symlink_is_followed_and_its_target_replaced_atomically(tmp_path, report):
    needs_root()
    target = tmp_path / "reports" / "latest.json"
    target.parent.mkdir()
    target.write_text("old")
    os.chown(target, NOBODY, NOBODY)
    target.chmod(0o640)
    before = target.stat()
    link = tmp_path / "r.json"
    link.symlink_to("reports/latest.json")
    # Under sudo, the user who ran it is the invoking user: the file stays theirs.
    proc = run_cli(*SCAN, "-f", "json", "-o", str(link), env={"SUDO_UID": str(NOBODY)})
    assert (proc.returncode, proc.stderr) == (0, "")
    assert link.is_symlink() and os.readlink(link) == "reports/latest.json"
    after = target.stat()
    assert target.read_text() == report
    assert after.st_ino != before.st_ino  # replaced, not rewritten in place
    assert (after.st_uid, after.st_gid, stat.S_IMODE(after.st_mode)) == (NOBODY, NOBODY, 0o640)
    assert sorted(os.listdir(target.parent)) == ["latest.json"]


def run_with_umask(mask: str, *args: str, sudo_uid: int | None = None):
    env = pinned()
    env.pop("SUDO_UID", None)
    if sudo_uid is not None:
        env["SUDO_UID"] = str(sudo_uid)
    return subprocess.run(
        ["sh", "-c", f'umask {mask} && exec "$0" "$@"', SNAPAUDIT, *args],
        capture_output=True,
        text=True,
        env=env,
    )


@pytest.mark.parametrize(("mask", "mode"), [("027", 0o640), ("077", 0o600), ("002", 0o664)])
def test_a_new_file_gets_the_umask(tmp_path: Path, mask: str, mode: int):
    new, baseline = tmp_path / "r.html", tmp_path / "baseline.json"
    proc = run_with_umask(mask, *SCAN, "-f", f"html:{new}", "--write-baseline", str(baseline))
    assert (proc.returncode, proc.stderr) == (0, "")
    assert stat.S_IMODE(new.stat().st_mode) == mode
    assert stat.S_IMODE(baseline.stat().st_mode) == mode


def test_a_replaced_file_keeps_its_mode_and_owner(tmp_path: Path, report: str):
    needs_root()
    existing = tmp_path / "r.json"
    existing.write_text("old")
    os.chown(existing, NOBODY, NOBODY)
    existing.chmod(0o600)
    proc = run_with_umask("022", *SCAN, "-f", "json", "-o", str(existing), sudo_uid=NOBODY)
    assert (proc.returncode, proc.stderr) == (0, "")
    st = existing.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (NOBODY, NOBODY, 0o600)
    assert existing.read_text() == report


@pytest.mark.parametrize("directory_mode", [0o755, 0o1777])
def test_another_users_file_at_the_name_is_replaced_by_ours(tmp_path, report, directory_mode):
    # Kept as theirs (or written through), it would let them edit root's report afterwards.
    needs_root()
    directory = tmp_path / "out"
    directory.mkdir()
    directory.chmod(directory_mode)
    for name in ("r.json", "baseline.json"):
        planted = directory / name
        planted.write_text("theirs")
        os.chown(planted, NOBODY, NOBODY)
        planted.chmod(0o666)
    proc = run_with_umask(
        "022",
        *SCAN,
        "-f",
        f"json:{directory / 'r.json'}",
        "--write-baseline",
        str(directory / "baseline.json"),
    )
    assert (proc.returncode, proc.stderr) == (0, "")
    for name in ("r.json", "baseline.json"):
        st = (directory / name).stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o644), name
    assert (directory / "r.json").read_text() == report


def on_disk(directory: Path) -> int:
    """Bytes in DIRECTORY's files, and in files this process is writing there that have no
    name yet."""
    size = sum(os.path.getsize(directory / n) for n in os.listdir(directory))
    for fd in os.listdir("/proc/self/fd"):
        try:  # the descriptor listdir() used is gone already
            st, target = os.stat(f"/proc/self/fd/{fd}"), os.readlink(f"/proc/self/fd/{fd}")
        except FileNotFoundError:
            continue
        if target == f"{directory}/#{st.st_ino} (deleted)":
            size += st.st_size
    return size


def test_pieces_are_written_as_they_come_and_a_failure_midway_replaces_nothing(tmp_path):
    path, new = tmp_path / "r.json", tmp_path / "new.json"
    path.write_text("old")
    path.chmod(0o640)
    written = []

    def pieces(fail: bool):
        for piece in ["é", "\U0001f600", "", "x" * 100_000]:
            # Each piece is on disk before the next is made: nothing holds them all.
            written.append(on_disk(tmp_path))
            yield piece
        if fail:
            raise RuntimeError("the report could not be made")

    for target in (path, new):
        with pytest.raises(RuntimeError):
            safefs.write_file(target, pieces(fail=True))
    assert (os.listdir(tmp_path), path.read_text()) == (["r.json"], "old")
    written.clear()
    safefs.write_file(path, pieces(fail=False))
    assert path.read_bytes() == "é\U0001f600".encode() + b"x" * 100_000
    assert written == [3, 3 + 2, 3 + 6, 3 + 6]  # "old" plus the temporary file
    assert (os.listdir(tmp_path), stat.S_IMODE(path.stat().st_mode)) == (["r.json"], 0o640)


# Killed (as by the OOM killer) midway through a report, and just before a journal's name is
# given to it.
KILLED_WHILE_WRITING = {
    "report": """
import os, signal, sys
from auditor import safefs

def pieces():
    yield "x" * 100_000
    os.kill(os.getpid(), signal.SIGKILL)

safefs.write_file(sys.argv[1], pieces())
""",
    "journal": """
import os, signal, sys
from auditor import safefs

os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)  # written, flushed next
safefs.create_file(sys.argv[1], b"j" * 10)
""",
}


@pytest.mark.parametrize("what", KILLED_WHILE_WRITING)
def test_a_write_killed_midway_leaves_nothing_behind(tmp_path: Path, what: str):
    path = tmp_path / what
    if what == "report":
        path.write_text("old")
    proc = subprocess.run([sys.executable, "-c", KILLED_WHILE_WRITING[what], str(path)])
    assert proc.returncode == -9
    assert os.listdir(tmp_path) == (["report"] if what == "report" else [])
    assert what != "report" or path.read_text() == "old"


def bad_outputs(tmp_path: Path) -> list[tuple[list[str], str]]:
    missing = tmp_path / "missing" / "r.json"
    junit = missing.with_suffix(".xml")
    return [
        (
            ["-o", str(missing)],
            f"cannot write {missing}: directory {missing.parent} does not exist",
        ),
        (["-o", str(tmp_path)], f"cannot write {tmp_path}: it is a directory"),
        (["-f", f"json:{tmp_path}"], f"cannot write {tmp_path}: it is a directory"),
        (["--write-baseline", str(tmp_path)], f"cannot write {tmp_path}: it is a directory"),
        (
            ["-f", f"sarif:{tmp_path / 'ok.sarif'}", "-f", f"junit:{junit}"],
            f"cannot write {junit}: directory {missing.parent} does not exist",
        ),
    ]


def test_bad_output_paths_stop_before_the_scan(tmp_path: Path):
    # A host that cannot be scanned would add its own error line and exit 3: it never gets
    # that far.
    unreachable = f"test://{tmp_path / 'no-such-node.xml'}"
    for args, line in bad_outputs(tmp_path):
        proc = run_cli("scan", "-c", unreachable, *args)
        assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", f"snapaudit: {line}\n")
        assert sorted(os.listdir(tmp_path)) == []


def test_an_unwritable_directory_stops_before_the_scan(tmp_path: Path, world_snapaudit: str):
    needs_root()
    require(os.path.exists("/usr/bin/setpriv"), "setpriv (util-linux) runs as another user")
    mine = Path("/usr")  # root's, 0755, and reachable by every user
    nobody = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    proc = subprocess.run(
        [*nobody, world_snapaudit, *SCAN, "-o", str(mine / "r.json")],
        capture_output=True,
        text=True,
    )
    assert (proc.returncode, proc.stdout) == (2, "")
    assert (
        proc.stderr
        == f"snapaudit: cannot write {mine / 'r.json'}: directory {mine} is not writable\n"
    )


def test_merge_checks_its_output_first(tmp_path: Path):
    missing = tmp_path / "missing" / "m.json"
    proc = run_cli("merge", str(tmp_path / "not-a-report.json"), "-o", str(missing))
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == (
        f"snapaudit: cannot write {missing}: directory {missing.parent} does not exist\n"
    )


def test_an_output_failing_at_write_time_costs_no_other(tmp_path: Path, report: str):
    full = mknod(tmp_path / "full", 1, 7)  # like /dev/full: every write fails with ENOSPC
    first, baseline = tmp_path / "r.json", tmp_path / "baseline.json"
    proc = run_cli(
        *SCAN, "-f", f"json:{first}", "-f", f"sarif:{full}", "--write-baseline", str(baseline)
    )
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == f"snapaudit: cannot write {full}: No space left on device\n"
    assert first.read_text() == report and baseline.exists()
    # A baseline that cannot be written does not cost the reports either.
    first.unlink()
    proc = run_cli(*SCAN, "-f", f"json:{first}", "--write-baseline", str(full))
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == f"snapaudit: cannot write {full}: No space left on device\n"
    assert first.read_text() == report
    assert stat.S_ISCHR(full.lstat().st_mode)


def test_exclusive_creation_replaces_nothing(tmp_path: Path):
    path = tmp_path / "journal"
    stamp = safefs.create_file(str(path), b"one\n")
    st = path.stat()
    assert (stat.S_IMODE(st.st_mode), path.read_bytes()) == (0o600, b"one\n")
    assert stamp == safefs.FileStamp(st.st_dev, st.st_ino, 4, st.st_mtime_ns)
    with pytest.raises(FileExistsError):
        safefs.create_file(str(path), b"two\n")
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(FileExistsError):
        safefs.create_file(str(link), b"two\n")
    assert path.read_bytes() == b"one\n" and not (tmp_path / "elsewhere").exists()
    assert sorted(os.listdir(tmp_path)) == ["journal", "link"]
    with pytest.raises(OSError):  # never appended through a symlink
        safefs.append_file(str(link), b"x")


def test_untrusted_directories():
    trusted = frozenset({0, 1000})
    assert safefs.untrusted_directory("/d", 0, 0o40755, trusted) is None
    assert safefs.untrusted_directory("/d", 1000, 0o40755, trusted) is None
    assert (
        safefs.untrusted_directory("/d", 1000, 0o40775, trusted)
        == "/d is writable by its group (mode 0775)"
    )
    assert (
        safefs.untrusted_directory("/tmp", 0, 0o41777, trusted)
        == "/tmp is writable by every user (mode 1777)"
    )
    assert (
        safefs.untrusted_directory("/d", 1001, 0o40700, trusted)
        == "/d belongs to uid 1001, neither root nor the invoking user"
    )


# Fix mode


@pytest.mark.qemu
@pytest.mark.parametrize("kind", ["image", "overlay"])
def test_a_symlink_swapped_in_for_the_part_file_redirects_nothing(tmp_path, monkeypatch, kind):
    require_qemu_tools()
    needs_root()
    source = create_qcow2(tmp_path / "source.qcow2", "1M")
    write_pattern(source, 0xA5, 0, 65536)
    source.chmod(0o644)
    victim = tmp_path / "victim"
    victim.write_bytes(b"root:secret\n")
    victim.chmod(0o600)
    path = str(tmp_path / "new.qcow2")
    part = images.part_path(path)
    run = images._run

    def swap_then_run(*args: str) -> str:
        # Another user who can write to the directory moves whatever is at the predictable
        # .part name away and plants a symlink to root's file there, before each tool runs.
        if os.path.lexists(part) and not os.path.islink(part):
            os.rename(part, tmp_path / "moved-away")
        if not os.path.islink(part):
            os.symlink(victim, part)
        return run(*args)

    monkeypatch.setattr(images, "_run", swap_then_run)
    if kind == "image":
        images.create_image(path, str(source), "qcow2", None, None, 65536)
        images.verify_image(path, str(source), "qcow2", None)
    else:
        images.create_overlay(path, str(source))
        assert images.info(path)["backing-filename"] == str(source)
    assert victim.read_bytes() == b"root:secret\n"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o600
    new = os.lstat(path)
    assert stat.S_ISREG(new.st_mode) and stat.S_IMODE(new.st_mode) == 0o644


def test_the_planner_refuses_target_directories_others_can_write_to():
    from auditor.fix.facts import Filesystem
    from auditor.fix.plan import Options
    from auditor.fix.planner import plan_domain
    from tests.fix.plans import TREE, facts

    cases = [
        (Filesystem(1, 10 << 20, 0, 0o41777), "/images is writable by every user (mode 1777)"),
        (Filesystem(1, 10 << 20, 0, 0o40777), "/images is writable by every user (mode 0777)"),
        (Filesystem(1, 10 << 20, 0, 0o40775), "/images is writable by its group (mode 0775)"),
        (
            Filesystem(1, 10 << 20, 1000, 0o40755),
            "/images belongs to uid 1000, neither root nor the invoking user",
        ),
    ]
    for fs, why in cases:
        plan = plan_domain(facts(TREE, "b", filesystems={"/images": fs}), Options())
        assert plan.refusals == (f"cannot write new images to /images: {why}",)
    trusted = facts(TREE, "b", filesystems={"/images": Filesystem(1, 10 << 20, 1000, 0o40755)})
    assert (
        plan_domain(replace(trusted, trusted_uids=frozenset({0, 1000})), Options()).refusals == ()
    )


@pytest.mark.qemu
def test_fix_refuses_a_world_writable_target_directory(libvirtd, tmp_path):
    conn = libvirt.open(libvirtd.uri)
    try:
        with removed_afterwards(conn):
            tree = SnapshotTree(conn, "shared-dir", tmp_path / "images")
            tree.write("vda", 0, 0x5A)
            tree.snapshot("one")
            public = tmp_path / "public"
            public.mkdir()
            public.chmod(0o1777)
            args = ["-c", libvirtd.uri, "--domain", "shared-dir", "--target-dir", str(public)]
            proc = run_cli("fix", *args, "--state-dir", str(tmp_path / "state"), "--apply")
    finally:
        conn.close()
    assert (proc.returncode, proc.stderr) == (1, "")
    assert (
        "domain 'shared-dir': refused\n"
        f"  - cannot write new images to {public}: {public} is writable by every user "
        "(mode 1777)\n\n1 domain: 1 refused\n"
    ) in proc.stdout
    assert list(public.iterdir()) == []
