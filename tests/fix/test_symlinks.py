"""Fix mode's own files under a hostile directory: a symlink planted at a journal's path or in
the lock directory, or a lock directory that is itself a link or open to every user, never
redirects a write; each is refused with one line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from auditor.fix.domain_lock import LockError, domain_lock
from auditor.fix.journal import Journal, JournalError
from auditor.fix.plan import Options
from auditor.fix.planner import plan_domain
from tests.fix.plans import TREE, UUID, facts
from tests.helpers import run_cli

TORN = b'{"type": "done", "st'  # a record cut short by a crash: what repair cuts off


def journal_with_a_torn_line(path: Path) -> bytes:
    Journal.create(path, "qemu:///system", plan_domain(facts(TREE, "b"), Options()))
    with path.open("ab") as out:
        out.write(TORN)
    return path.read_bytes()


def test_repairing_a_journal_never_follows_a_symlink(tmp_path):
    victim = tmp_path / "victim.journal"
    kept = journal_with_a_torn_line(victim)  # a file repair would cut, were it followed
    link = tmp_path / "planted.journal"
    link.symlink_to(victim)
    for repair in (False, True):
        with pytest.raises(JournalError) as refused:
            Journal.load(link, repair=repair)
        assert str(refused.value) == f"{link} is a symlink: name the journal itself"
    assert victim.read_bytes() == kept
    loaded = Journal.load(victim, repair=True)  # the journal itself is repaired as before
    assert victim.read_bytes() == kept.removesuffix(TORN)
    assert loaded.done == set()


def test_a_journal_given_as_a_symlink_is_refused_on_the_command_line(tmp_path):
    victim = tmp_path / "victim.journal"
    journal_with_a_torn_line(victim)
    link = tmp_path / "planted.journal"
    link.symlink_to(victim)
    for option in ("--resume", "--rollback"):
        proc = run_cli("fix", option, str(link))
        assert (proc.returncode, proc.stdout, proc.stderr) == (
            2,
            "",
            f"snapaudit: {link} is a symlink: name the journal itself\n",
        )


@pytest.mark.parametrize("target", ["existing", "new"])
def test_a_symlink_planted_in_the_lock_directory_redirects_nothing(tmp_path, target):
    locks, victim = tmp_path / "locks", tmp_path / "victim"
    locks.mkdir(mode=0o700)
    if target == "existing":
        victim.write_text("keep me")
        victim.chmod(0o644)
    (locks / f"{UUID}.lock").symlink_to(victim)
    with pytest.raises(LockError) as refused, domain_lock(UUID, locks):
        pass
    assert str(refused.value) == (
        f"cannot take the lock {locks}/{UUID}.lock: {locks}/{UUID}.lock is a symlink"
    )
    if target == "existing":
        assert (victim.read_text(), victim.stat().st_mode & 0o777) == ("keep me", 0o644)
    else:
        assert not victim.exists()


def test_a_lock_directory_that_is_a_symlink_or_open_to_all_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    link = tmp_path / "locks"
    link.symlink_to(elsewhere)
    with pytest.raises(LockError) as refused, domain_lock(UUID, link):
        pass
    assert str(refused.value) == f"cannot take the lock {link}/{UUID}.lock: {link} is a symlink"
    assert os.listdir(elsewhere) == []

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    with pytest.raises(LockError) as refused, domain_lock(UUID, shared):
        pass
    assert str(refused.value) == (
        f"cannot take the lock {shared}/{UUID}.lock: {shared} is writable by every user (mode 1777)"
    )
    assert os.listdir(shared) == []


def test_a_lock_directory_below_another_users_directory_is_refused(tmp_path):
    # They could swap their directory for a link while fix creates its lock there.
    if os.geteuid() != 0:
        pytest.skip("needs root: another user's directory is made with chown")
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, 65534, 65534)
    locks = theirs / "locks"
    locks.mkdir(mode=0o700)
    with pytest.raises(LockError) as caught, domain_lock(UUID, locks):
        pass
    assert str(caught.value) == (
        f"cannot take the lock {locks}/{UUID}.lock: {theirs} belongs to uid 65534, neither root"
        " nor the invoking user"
    )
    assert os.listdir(locks) == []
