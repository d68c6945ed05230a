"""Output paths walked one component at a time: a directory or symlink another user controls,
anywhere along the path, is refused before anything is written; renames racing the walk never
redirect a write."""

from __future__ import annotations

import ctypes
import os
import threading
from pathlib import Path

import pytest

from auditor.safefs.chase import Untrusted, chase
from tests.helpers import NOBODY, needs_root, nobodys, run_cli

SCAN = ("scan", "--demo", "--fail-on", "never")
_RENAME_EXCHANGE = 2


def root_only(tmp_path: Path) -> tuple[Path, bytes]:
    """A root-only directory holding report.json and baseline.json: what must never change."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    for name in ("report.json", "baseline.json"):
        (private / name).write_bytes(b"root's own\n")
    return private, b"root's own\n"


def test_a_directory_symlink_of_another_user_is_refused(tmp_path: Path):
    # ~/reports made a link to a root-only directory by the home's owner.
    needs_root()
    private, kept = root_only(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    nobodys(home)
    (home / "reports").symlink_to(private)
    nobodys(home / "reports")
    target = home / "reports" / "report.json"
    for args in (("-f", f"json:{target}"), ("-o", str(target)), ("--write-baseline", str(target))):
        proc = run_cli(*SCAN, *args)
        assert (proc.returncode, proc.stdout) == (2, "")
        assert proc.stderr == (
            f"snapaudit: cannot write {target}: {home} belongs to uid {NOBODY}, neither root nor"
            " the invoking user\n"
        )
    assert (private / "report.json").read_bytes() == kept


@pytest.mark.parametrize("mode", [0o775, 0o757])
def test_a_directory_others_can_write_to_is_refused(tmp_path: Path, mode: int):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(mode)
    proc = run_cli(*SCAN, "-f", "json", "-o", str(shared / "sub" / "r.json"))
    who = "its group" if mode == 0o775 else "every user"
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == (
        f"snapaudit: cannot write {shared}/sub/r.json: {shared} is writable by {who} "
        f"(mode {mode:04o})\n"
    )


def test_merge_output_through_another_users_link_is_refused(tmp_path: Path):
    needs_root()
    private, kept = root_only(tmp_path)
    report = tmp_path / "in.json"
    assert run_cli(*SCAN, "-f", f"json:{report}").returncode == 0
    public = tmp_path / "public"
    public.mkdir()
    public.chmod(0o1777)
    (public / "out").symlink_to(private)
    nobodys(public / "out")
    proc = run_cli("merge", str(report), "-o", str(public / "out" / "report.json"))
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == (
        f"snapaudit: cannot write {public}/out/report.json: symlink {public}/out belongs to uid"
        f" {NOBODY}, neither root nor the invoking user\n"
    )
    assert (private / "report.json").read_bytes() == kept


def exchange(a: Path, b: Path) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    at_fdcwd = -100
    if libc.renameat2(at_fdcwd, bytes(a), at_fdcwd, bytes(b), _RENAME_EXCHANGE) != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))


def test_a_directory_and_a_symlink_swapped_in_a_loop_never_redirect_a_write(tmp_path: Path):
    # In a sticky directory another user owns both names and swaps them as fast as it can:
    # their directory (with a file of theirs at the name) and a link to root's directory.
    needs_root()
    private, kept = root_only(tmp_path)
    before = {n: os.stat(private / n) for n in os.listdir(private)}
    public = tmp_path / "public"
    public.mkdir()
    public.chmod(0o1777)
    theirs = public / "reports"
    theirs.mkdir()
    nobodys(theirs)
    planted = theirs / "baseline.json"
    planted.write_text("theirs")
    nobodys(planted)
    (public / "swap").symlink_to(private)
    nobodys(public / "swap")
    stop = threading.Event()

    def swap() -> None:
        while not stop.is_set():
            exchange(public / "reports", public / "swap")

    racer = threading.Thread(target=swap)
    racer.start()
    try:
        outcomes = set()
        for _ in range(20):
            target = public / "reports" / "baseline.json"
            proc = run_cli(*SCAN, "--write-baseline", str(target), "-f", "json:/dev/null")
            assert (proc.returncode, proc.stdout) == (2, ""), proc.stderr
            outcomes.add(proc.stderr.split(": ", 2)[2])
    finally:
        stop.set()
        racer.join()
    assert outcomes <= {
        f"{public}/reports belongs to uid {NOBODY}, neither root nor the invoking user\n",
        f"symlink {public}/reports belongs to uid {NOBODY}, neither root nor the invoking user\n",
        "Too many levels of symbolic links\n",  # swapped between lstat and open: not followed
        "Not a directory\n",
    }
    assert {n: os.stat(private / n) for n in os.listdir(private)} == before
    assert all((private / n).read_bytes() == kept for n in before)
    for directory in (public / "reports", public / "swap"):
        if directory.is_dir() and not directory.is_symlink():
            assert [p.stat().st_uid for p in directory.iterdir()] == [NOBODY]


def test_trusted_links_are_followed_and_dot_dot_is_physical(tmp_path: Path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "link").symlink_to("b")
    (tmp_path / "up").symlink_to("a/b/..")  # a/b/.. is a, as the kernel resolves it
    with chase(str(tmp_path / "up" / "link" / "r.json")) as found:
        assert (found.directory, found.name, found.st, found.followed) == (
            str(tmp_path / "a" / "b"),
            "r.json",
            None,
            True,
        )
    (tmp_path / "loop").symlink_to("loop")
    with (
        pytest.raises(Untrusted, match="too many levels of symlinks"),
        chase(str(tmp_path / "loop" / "x")),
    ):
        pass


def test_a_descriptor_path_must_name_an_open_descriptor():
    # Closed now, the number would be one snapaudit opens for itself later (a libvirt socket).
    proc = run_cli(*SCAN, "-f", "json", "-o", "/dev/fd/7")
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        2,
        "",
        "snapaudit: cannot write /dev/fd/7: Bad file descriptor\n",
    )
