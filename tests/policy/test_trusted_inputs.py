"""Files that decide what a gate says (configuration, waivers, baselines) are used only when
root or the invoking user wrote them; no input is waited on or read through another user's
link; and an error never shows what a file the invoking user could not read holds."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.helpers import NOBODY, SNAPAUDIT, fixture_uri, needs_root, nobodys, pinned, run_cli

SEED = fixture_uri("seed_examples.xml")  # error findings: the gate fails (exit 1)
LAX = 'ignore = ["ALL"]\nfail_on = "never"\n'


def run_in(directory: Path, *args: str) -> subprocess.CompletedProcess:
    env = pinned()
    env.pop("SUDO_UID", None)
    return subprocess.run(
        [SNAPAUDIT, *args], cwd=directory, capture_output=True, text=True, env=env, timeout=60
    )


def test_a_working_directory_config_another_user_wrote_is_passed_over(tmp_path: Path):
    # In /tmp (sticky, open to all) another user leaves a snapaudit.toml that waives all.
    needs_root()
    public = tmp_path / "public"
    public.mkdir()
    public.chmod(0o1777)
    (public / "snapaudit.toml").write_text(LAX)
    nobodys(public / "snapaudit.toml")
    proc = run_in(public, "scan", "-c", SEED, "-f", "json", "-o", "/dev/null")
    assert proc.returncode == 1  # the gate still fails
    assert proc.stderr == (
        "snapaudit: snapaudit.toml: not used: it belongs to uid 65534, neither root nor the"
        " invoking user; passed over\n"
    )
    show = run_in(public, "config")
    assert (show.returncode, show.stdout) == (0, "configuration OK: defaults only\n")
    assert show.stderr == proc.stderr


def test_a_working_directory_config_of_ours_is_used(tmp_path: Path):
    (tmp_path / "snapaudit.toml").write_text(LAX)
    proc = run_in(tmp_path, "scan", "-c", SEED, "-f", "json", "-o", "/dev/null")
    assert (proc.returncode, proc.stderr) == (0, "")


@pytest.mark.parametrize("what", ["owner", "group-writable", "directory", "world-writable"])
def test_a_config_or_baseline_others_could_write_is_refused(tmp_path: Path, what: str):
    if what in ("owner", "directory"):
        needs_root()
    home = tmp_path / "home"
    home.mkdir()
    config, baseline = home / "site.toml", home / "baseline.json"
    config.write_text(LAX)
    assert run_cli("scan", "-c", SEED, "--write-baseline", str(baseline)).returncode == 0
    why = {
        "owner": "it belongs to uid 65534, neither root nor the invoking user",
        "group-writable": "it is writable by its group (mode 0664)",
        "world-writable": "it is writable by every user (mode 0646)",
        "directory": f"{home} belongs to uid 65534, neither root nor the invoking user",
    }[what]
    for path in (config, baseline):
        if what == "owner":
            nobodys(path)
        elif what == "group-writable":
            path.chmod(0o664)
        elif what == "world-writable":
            path.chmod(0o646)
    if what == "directory":
        nobodys(home)
    for option, path in (("--config", config), ("--baseline", baseline)):
        proc = run_cli("scan", "-c", SEED, option, str(path))
        assert (proc.returncode, proc.stdout) == (2, "")
        assert proc.stderr == f"snapaudit: {path}: not used: {why}\n"


def test_a_waivers_file_linked_to_a_secret_shows_nothing_of_it(tmp_path: Path):
    needs_root()
    secret = tmp_path / "secret.toml"
    secret.write_text('root_password = "hunter2"\n')
    secret.chmod(0o600)
    site = tmp_path / "site"
    site.mkdir()
    (site / "site.toml").write_text('waivers_file = "waivers.toml"\n')
    (site / "waivers.toml").symlink_to(secret)
    nobodys(site / "waivers.toml")
    proc = run_cli("scan", "-c", SEED, "--config", str(site / "site.toml"))
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == (
        f"snapaudit: {site}/waivers.toml: not used: symlink {site}/waivers.toml belongs to uid"
        " 65534, neither root nor the invoking user\n"
    )
    assert "root_password" not in proc.stderr and "hunter2" not in proc.stderr


def test_fifos_are_refused_never_waited_on(tmp_path: Path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for args in (
        ("scan", "-c", SEED, "--baseline", str(fifo)),
        ("scan", "-c", SEED, "--config", str(fifo)),
        ("diff", str(fifo), str(fifo)),
        ("merge", str(fifo)),
    ):
        proc = run_cli(*args)  # a wait would end in run_cli's timeout, and fail the test
        assert (proc.returncode, proc.stdout) == (2, ""), args
        assert proc.stderr == f"snapaudit: {fifo}: cannot read: not a regular file (a FIFO)\n"


def test_paths_behind_a_directory_that_cannot_be_searched_are_one_line(world_snapaudit: str):
    # As the audit user, started where it may not look: never a traceback.
    needs_root()
    closed = Path(tempfile.mkdtemp(prefix="snapaudit-closed-"))  # root's, 0700
    try:
        nobody = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
        for args, path in [
            (("scan", "--demo", "--config"), closed / "c.toml"),
            (("scan", "--from"), closed / "b.tar.gz"),
        ]:
            proc = subprocess.run(
                [*nobody, world_snapaudit, *args, str(path)],
                capture_output=True,
                text=True,
                cwd="/",
            )
            assert (proc.returncode, proc.stdout) == (2, ""), proc.stderr
            assert proc.stderr == f"snapaudit: {path}: cannot read: Permission denied\n"
    finally:
        closed.rmdir()
