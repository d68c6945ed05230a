"""Fix mode where the fault matrix (test_fix_faults) does not look: journals and state
directories another user could change, a disk defined on a symlink, a stop signal between two
steps, and a second --apply over a conversion that did not finish."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fix.scenario import Scenario, wait_stopped
from tests.helpers import run_cli, start_cli

pytestmark = pytest.mark.qemu
NOBODY = 65534


@pytest.fixture
def scenario(conn, libvirtd, tmp_path):
    made = Scenario(libvirtd.uri, tmp_path / "dom")
    yield made
    made.close()


def apply(scenario: Scenario, *extra: str):
    args = ["-c", scenario.uri, "--state-dir", str(scenario.state), "--domain", "dom"]
    return run_cli("fix", *args, "--apply", *extra)


def killed_at(scenario: Scenario, record: str) -> Path:
    """The journal of an --apply --remove-originals killed just before journal record N."""
    scenario.apply({"SNAPAUDIT_FIX_FAULT_AT": record}).communicate(timeout=120)
    return scenario.journal()


def untouched(scenario: Scenario) -> list[str]:
    """Nothing changed: the metadata and the image directory are as before."""
    problems = []
    if scenario.tree.metadata() != scenario.before:
        problems.append("the metadata changed")
    if sorted(scenario.images.iterdir()) != scenario.files:
        problems.append(f"files: {sorted(scenario.images.iterdir())}")
    return problems


def test_a_journal_another_user_could_change_is_not_trusted(scenario):
    """A journal says which XML fix defines and which files it removes: one another user
    owns, can write, or can replace in its directory is refused whole, before anything."""
    journal = killed_at(scenario, "3")
    kept = journal.read_bytes()
    for change, why in [
        (
            lambda: os.chown(journal, NOBODY, NOBODY),
            f"it belongs to uid {NOBODY}, not to the user fix runs as (uid 0)",
        ),
        (lambda: os.chmod(journal, 0o620), "other users can write to it (mode 0620)"),
        (
            lambda: os.chmod(scenario.state, 0o777),
            f"{scenario.state} is writable by every user (mode 0777)",
        ),
        (
            lambda: os.chmod(scenario.state, 0o770),
            f"{scenario.state} is writable by its group (mode 0770)",
        ),
        (
            lambda: os.chown(scenario.state, NOBODY, NOBODY),
            f"{scenario.state} belongs to uid {NOBODY}, neither root nor the invoking user",
        ),
    ]:
        change()
        for option in ("--rollback", "--resume"):
            proc = run_cli("fix", option, str(journal))
            assert (proc.returncode, proc.stdout, proc.stderr) == (
                2,
                "",
                f"snapaudit: not trusting journal {journal}: {why}\n",
            )
        os.chown(journal, 0, 0)
        os.chmod(journal, 0o600)
        os.chown(scenario.state, 0, 0)
        os.chmod(scenario.state, 0o700)
    # Under sudo, the invoking user's journal is theirs, not fix's: not trusted either.
    os.chown(journal, NOBODY, NOBODY)
    proc = run_cli("fix", "--rollback", str(journal), env={"SUDO_UID": str(NOBODY)})
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        2,
        "",
        f"snapaudit: not trusting journal {journal}: it belongs to uid {NOBODY}, not to the"
        " user fix runs as (uid 0)\n",
    )
    os.chown(journal, 0, 0)
    assert journal.read_bytes() == kept
    os.chmod(scenario.state, 0o1777)  # sticky, like /tmp: nobody else can replace it there
    proc = run_cli("fix", "--rollback", str(journal))
    assert (proc.returncode, proc.stdout) == (0, f"domain 'dom': rolled back; journal {journal}\n")
    assert scenario.check("--rollback") == []


@pytest.mark.parametrize("how", ["owner", "every user", "symlink"])
def test_a_state_directory_another_user_could_change_gets_no_journal(scenario, tmp_path, how):
    if how == "symlink":
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir(mode=0o700)
        scenario.state.symlink_to(elsewhere)
        os.lchown(scenario.state, NOBODY, NOBODY)
        why = (
            f"symlink {scenario.state} belongs to uid {NOBODY}, neither root nor the invoking user"
        )
    else:
        scenario.state.mkdir(mode=0o700)
        if how == "owner":
            os.chown(scenario.state, NOBODY, NOBODY)
            why = f"{scenario.state} belongs to uid {NOBODY}, neither root nor the invoking user"
        else:
            os.chmod(scenario.state, 0o777)
            why = f"{scenario.state} is writable by every user (mode 0777)"
    proc = apply(scenario)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    journal = next(line for line in proc.stdout.splitlines() if "FAILED" in line)
    assert journal.startswith(f"  FAILED: cannot create journal {scenario.state}/dom.")
    assert journal.endswith(f".journal: {why}")
    assert list(scenario.state.iterdir()) == []
    assert untouched(scenario) == []


def test_a_disk_on_a_symlink_is_refused_before_anything_changes(scenario):
    """Fix holds, checks and removes an original by its own name; through a link it could
    do none of that, and used to fail after writing its journal, naming a --resume that
    could never succeed."""
    real = scenario.images / "real.qcow2"
    os.rename(scenario.original, real)
    scenario.original.symlink_to(real.name)
    scenario.files = sorted(scenario.images.iterdir())
    proc = apply(scenario, "--remove-originals")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    refusal = [line for line in proc.stdout.splitlines() if "symlink" in line]
    assert refusal == [
        f"  - image {scenario.original} cannot be read: it is a symlink, which fix does not "
        "follow: define the disk on the image itself"
    ]
    assert not scenario.state.exists() or list(scenario.state.iterdir()) == []
    assert untouched(scenario) == []


def stop_with(proc, signum: int) -> tuple[int, str]:
    assert wait_stopped(proc)
    proc.send_signal(signum)
    proc.send_signal(signal.SIGCONT)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def test_a_stop_signal_names_the_command_that_finishes_the_job(scenario):
    stop = {"SNAPAUDIT_FIX_FAULT_AT": "8", "SNAPAUDIT_FIX_FAULT": "stop"}
    code, err = stop_with(scenario.apply(stop), signal.SIGTERM)
    journal = scenario.journal()
    assert code == 143
    assert err.endswith(
        f"snapaudit: stopped between two steps; to finish, run snapaudit fix --resume {journal}"
        "\nsnapaudit: stopped by SIGTERM\n"
    )
    stop["SNAPAUDIT_FIX_FAULT_AT"] = "2"  # rollback-started written, the metadata not undone
    proc = start_cli("fix", "--rollback", str(journal), env=stop, faulty=True)
    code, err = stop_with(proc, signal.SIGINT)
    assert (code, err) == (
        130,
        f"snapaudit: stopped between two steps; to finish, run snapaudit fix --rollback {journal}"
        "\nsnapaudit: stopped by SIGINT\n",
    )
    proc = run_cli("fix", "--rollback", str(journal))
    assert (proc.returncode, proc.stdout) == (0, f"domain 'dom': rolled back; journal {journal}\n")
    assert scenario.check("--rollback") == []


@pytest.mark.parametrize("record", ["11", "13"])
def test_apply_again_over_an_unfinished_conversion_names_it(scenario, record):
    """Killed once every snapshot's internal metadata was dropped (11), or once one was
    redefined as external (13): the domain then lists no internal snapshot, and a second
    --apply used to say "nothing to convert" (exit 0), while the other states lived only
    inside the original image. It refuses, naming the journal that finishes the job."""
    journal = killed_at(scenario, record)
    proc = apply(scenario)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert (
        f"  - a conversion of it did not finish: run snapaudit fix --resume {journal}\n"
        in proc.stdout
    )
    assert list(scenario.state.iterdir()) == [journal]
    proc = run_cli("fix", "--resume", str(journal))
    assert (proc.returncode, proc.stdout) == (0, f"domain 'dom': converted; journal {journal}\n")
    assert scenario.check("--resume") == []
    proc = apply(scenario)  # finished: nothing left to convert, nothing refused
    assert proc.returncode == 0, proc.stdout


def test_a_full_state_directory_names_the_journal_it_could_not_create(scenario):
    scenario.state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(scenario.state)])
    try:
        filler = scenario.state / "filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=4k"], capture_output=True)
        proc = apply(scenario)
        assert proc.returncode == 3, proc.stdout + proc.stderr
        (failed,) = [line for line in proc.stdout.splitlines() if "FAILED" in line]
        assert failed.startswith(f"  FAILED: cannot create journal {scenario.state}/dom.")
        assert failed.endswith(".journal: No space left on device")
        assert list(scenario.state.iterdir()) == [filler]
    finally:
        subprocess.run(["umount", "-l", str(scenario.state)])
    assert untouched(scenario) == []


def test_a_fifo_named_as_the_journal_is_refused_at_once(tmp_path):
    fifo = tmp_path / "planted.journal"
    os.mkfifo(fifo)
    for option in ("--rollback", "--resume"):
        proc = run_cli("fix", option, str(fifo))  # used to wait for a writer forever
        assert (proc.returncode, proc.stdout, proc.stderr) == (
            2,
            "",
            f"snapaudit: {fifo} is not a snapaudit fix journal (not a file)\n",
        )


def test_messages_name_the_journal_by_its_absolute_path(scenario):
    """A relative --state-dir or journal path would name a command that works only from
    the directory fix was started in."""
    stop = {"SNAPAUDIT_FIX_FAULT_AT": "8", "SNAPAUDIT_FIX_FAULT": "stop"}
    root = scenario.root
    args = ["-c", scenario.uri, "--state-dir", "state", "--domain", "dom", "--apply"]
    proc = start_cli("fix", *args, env=stop, faulty=True, cwd=root)
    code, err = stop_with(proc, signal.SIGTERM)
    journal = scenario.journal()
    assert code == 143
    assert f"snapaudit: domain 'dom': journal {journal}\n" in err
    assert f"to finish, run snapaudit fix --resume {journal}\n" in err
    relative = journal.relative_to(root)
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "snapaudit"), "fix", "--rollback", str(relative)],
        capture_output=True,
        text=True,
        cwd=root,
    )
    assert (proc.returncode, proc.stdout) == (0, f"domain 'dom': rolled back; journal {journal}\n")


def test_an_original_replaced_by_a_copy_with_its_size_and_mtime_is_never_removed(scenario):
    """Killed once the domain is defined on its new images (14+), the original then replaced
    by another file with the same bytes, size and mtime (a restore by rename): it is not the
    file that was verified, so --resume refuses to remove it and names --rollback, which keeps
    it as the truth."""
    journal = killed_at(scenario, "14+")
    original = scenario.original
    copy = original.with_name("restored.tmp")
    copy.write_bytes(original.read_bytes())
    before = original.stat()
    os.utime(copy, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.rename(copy, original)
    replaced = original.stat()
    assert (replaced.st_size, replaced.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert replaced.st_ino != before.st_ino

    proc = run_cli("fix", "--resume", str(journal))
    assert (proc.returncode, proc.stdout) == (
        3,
        f"domain 'dom': FAILED: original image {original} was written or replaced after the "
        f"conversion began, so the converted images are out of date: only snapaudit fix "
        f"--rollback {journal} applies (it keeps the original)\n",
    )
    assert original.stat().st_ino == replaced.st_ino
    proc = run_cli("fix", "--rollback", str(journal))
    assert (proc.returncode, proc.stdout) == (0, f"domain 'dom': rolled back; journal {journal}\n")
    assert original.stat().st_ino == replaced.st_ino
    assert scenario.check("--rollback") == []


def test_resume_of_a_finished_conversion_checks_before_it_claims(scenario):
    proc = scenario.apply({})
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    journal = scenario.journal()
    proc = run_cli("fix", "--resume", str(journal))
    assert (proc.returncode, proc.stdout) == (0, f"domain 'dom': converted; journal {journal}\n")
    assert proc.stderr == f"snapaudit: {journal} had already finished; checking its images\n"
    (base,) = scenario.images.glob("dom.vda.s1.*.qcow2")  # the full image of snapshot s1
    base.unlink()
    proc = run_cli("fix", "--resume", str(journal))
    assert (proc.returncode, proc.stdout) == (
        3,
        f"domain 'dom': FAILED: image {base} that this conversion created is gone: that "
        "happened after the conversion finished: there is nothing to resume\n",
    )
