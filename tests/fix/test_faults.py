"""Fix mode under faults, on the real lab: whatever happens at whichever journal record of
--apply, --resume or --rollback, one of --resume and --rollback then finishes, and every byte
the guest ever wrote is intact (or nothing changed at all).

The fix process stops itself (SIGSTOP) or dies (SIGKILL) just before or just after its Nth
journal record (SNAPAUDIT_FIX_FAULT_AT=N or N+, read by tests/faulty_snapaudit.py). While it
is stopped a test changes the world: it starts the domain, writes to the original image, makes
the journal immutable (chattr +i) or fills its filesystem (a tiny tmpfs). Recovery follows the
messages: a failed command must name the one command that applies, which is then run.

One small domain per scenario (one 8 MiB disk, s1 ── s2 (current) ── now), converted with
--remove-originals, the riskiest mode: 12 steps, 16 journal records.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.fix.scenario import Scenario, wait_stopped
from tests.helpers import run_cli, start_cli

pytestmark = pytest.mark.qemu
WORKERS = 4
RECORDS = 16  # 3 images created (2 records each), 3 verified, 4 metadata steps, define,
# remove the original, finished
BOUNDARIES = [f"{n}{edge}" for n in range(1, RECORDS + 1) for edge in ("", "+")]


def fill_the_last_page(journal: Path) -> None:
    """Pad the last record with blanks (still the same JSON) up to a page boundary, so that
    the next record needs a new block of the (then full) filesystem."""
    data = journal.read_bytes()
    with journal.open("r+b") as out:
        out.write(data[:-1] + b" " * (-len(data) % 4096) + b"\n")


def run_scenario(uri: str, root: Path, case: tuple[str, str, str]) -> list[str]:
    """PHASE (apply, or resume or rollback of an apply killed midway) stops at WHERE, meets
    FAULT, then recovery runs, and the result is checked."""
    phase, where, fault = case
    scenario = Scenario(uri, root)
    try:
        if fault == "full":
            scenario.state.mkdir()
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(scenario.state)])
        stop = {"SNAPAUDIT_FIX_FAULT_AT": where, "SNAPAUDIT_FIX_FAULT": "stop"}
        if phase == "apply":
            proc = scenario.apply(stop)
            first = "--resume" if BOUNDARIES.index(where) % 2 else "--rollback"
        else:
            killed = scenario.apply({"SNAPAUDIT_FIX_FAULT_AT": PHASES[phase]})
            killed.communicate(timeout=120)
            proc = start_cli("fix", f"--{phase}", str(scenario.journal()), env=stop, faulty=True)
            first = "--rollback" if phase == "resume" else "--resume"
        own = "--rollback" if phase == "rollback" else "--resume"
        # After a phase's last record nothing is left to write: a broken journal goes unseen.
        last = {"apply": RECORDS, "resume": RESUME_RECORDS, "rollback": ROLLBACK_RECORDS}[phase]
        final = where == f"{last}+"
        return fault_then_recover(scenario, proc, (phase, fault, final), first, own)
    finally:
        if fault == "full":
            subprocess.run(["umount", "-l", str(scenario.state)])
        scenario.close()


def fault_then_recover(
    scenario: Scenario, proc: subprocess.Popen, how: tuple[str, str, bool], first: str, own: str
) -> list[str]:
    phase, fault, final = how
    if not wait_stopped(proc):
        return [f"ran to the end: {proc.communicate()}"]
    try:
        if fault == "start":
            scenario.try_start(phase)
        elif fault == "kill":
            proc.kill()
        elif fault == "write":
            proc.kill()
            proc.wait()
            scenario.write_original()
        elif fault == "immutable":
            subprocess.run(["chattr", "+i", str(scenario.journal())], check=True)
        elif fault == "full":
            fill_the_last_page(scenario.journal())
            filler = scenario.state / "filler"
            subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=4k"], capture_output=True)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
    out, _ = proc.communicate(timeout=120)
    if fault in ("immutable", "full") and final:
        if proc.returncode != 0:
            scenario.problems.append(f"its last record was written, yet: {out}")
        subprocess.run(["chattr", "-i", str(scenario.journal())], check=True)
        with contextlib.suppress(FileNotFoundError):
            (scenario.state / "filler").unlink()
        return scenario.check(own)
    if fault in ("immutable", "full"):
        if proc.returncode != 3 or f"cannot write journal {scenario.journal()}: " not in out:
            scenario.problems.append(f"run on a broken journal: {proc.returncode} {out}")
        again = run_cli("fix", first, str(scenario.journal()))
        if again.returncode != 3:
            scenario.problems.append(f"{first} on a broken journal: {again.stdout}")
        if fault == "immutable":
            subprocess.run(["chattr", "-i", str(scenario.journal())], check=True)
        else:
            (scenario.state / "filler").unlink()
    elif fault == "start" and proc.returncode == 0:
        return scenario.check(own)
    return scenario.check(scenario.recover(first))


FAULTS = ("kill", "write", "start", "immutable", "full")
# Where the apply is killed before a resume or rollback is faulted: before the third image's
# record; after define-domain ran but before its record.
PHASES = {"resume": "7", "rollback": "14"}
RESUME_RECORDS = 10  # from the third image on
ROLLBACK_RECORDS = 6  # rollback-started, metadata and 3 images undone, rolled-back


def cases() -> list[tuple[str, str, str]]:
    """Every fault at both edges of every journal record of apply, resume and rollback."""
    every = [("apply", where) for where in BOUNDARIES]
    every += [("resume", f"{n}{e}") for n in range(1, RESUME_RECORDS + 1) for e in ("", "+")]
    every += [("rollback", f"{n}{e}") for n in range(1, ROLLBACK_RECORDS + 1) for e in ("", "+")]
    return [(phase, where, fault) for phase, where in every for fault in FAULTS]


def test_every_fault_at_every_journal_record(conn, libvirtd, tmp_path):
    every = cases()
    assert len(every) == 320
    with ThreadPoolExecutor(WORKERS) as pool:
        results = pool.map(
            lambda c: run_scenario(libvirtd.uri, tmp_path / "-".join(c).replace("+", "p"), c),
            every,
        )
        problems = {" ".join(c): p for c, p in zip(every, results, strict=True) if p}
    assert problems == {}


def test_a_forged_or_malformed_journal_is_refused_whole(conn, libvirtd, tmp_path):
    scenario = Scenario(libvirtd.uri, tmp_path / "forged")
    try:
        scenario.apply({"SNAPAUDIT_FIX_FAULT_AT": "3"}).communicate(timeout=120)
        lines = scenario.journal().read_text().splitlines()
    finally:
        scenario.close()
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    header = json.loads(lines[0])
    image = dict(header["plan"]["images"][0], path=str(victim))
    header["plan"]["images"].append(image)
    forged = tmp_path / "forged.journal"
    forged.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    bad_record = tmp_path / "bad-record.journal"
    bad_record.write_text("\n".join([lines[0], '{"type": "done", "step": 99}']) + "\n")
    created = json.dumps({"type": "created", "path": str(victim), "file": [1, 2, 3, 4]})
    bad_path = tmp_path / "bad-path.journal"
    bad_path.write_text("\n".join([lines[0], created]) + "\n")

    bad_undone = tmp_path / "bad-undone.journal"
    undone = json.dumps({"type": "undone", "what": str(victim)})
    bad_undone.write_text("\n".join([lines[0], undone]) + "\n")

    # Consistent: a new image renamed to the victim everywhere, created with its identity.
    first = header["plan"]["images"][0]["path"]
    renamed = json.loads(lines[0].replace(json.dumps(first)[1:-1], str(victim)))
    st = victim.stat()
    made = {"type": "created", "path": str(victim), "file": [st.st_dev, st.st_ino, 0, 0]}
    consistent = tmp_path / "consistent.journal"
    consistent.write_text(json.dumps(renamed) + "\n" + json.dumps(made) + "\n")

    for journal, why in [
        (forged, "line 1 is not a valid plan (its images are not the ones its steps create)"),
        (
            consistent,
            f"line 1 is not a valid plan ('{victim}' is not a new image in a directory planned"
            " for them)",
        ),
        (
            bad_undone,
            f"line 2 is not a valid record ('{victim}' is neither the metadata nor an image "
            "of the plan)",
        ),
        (bad_record, "line 2 is not a valid record (no step 99)"),
        (bad_path, f"line 2 is not a valid record ('{victim}' is not an image of the plan)"),
    ]:
        proc = run_cli("fix", "--rollback", str(journal))
        assert (proc.returncode, proc.stdout, proc.stderr) == (
            2,
            "",
            f"snapaudit: {journal}: {why}\n",
        )
    assert victim.read_text() == "keep me"


def test_a_rollback_journals_each_step_it_undoes(conn, libvirtd, tmp_path):
    scenario = Scenario(libvirtd.uri, tmp_path / "undo")
    try:
        scenario.apply({"SNAPAUDIT_FIX_FAULT_AT": PHASES["rollback"]}).communicate(timeout=120)
        proc = run_cli("fix", "--rollback", str(scenario.journal()))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        records = [json.loads(line) for line in scenario.journal().read_text().splitlines()]
        plan = records[0]["plan"]
        tail = [(r["type"], r.get("what")) for r in records[-6:]]
        assert tail == [
            ("rollback-started", None),
            ("undone", "metadata"),
            *[("undone", image["path"]) for image in plan["images"]],
            ("rolled-back", None),
        ]
        assert scenario.check("--rollback") == []
    finally:
        scenario.close()


# Only the test suite arms the fault points

EVERY_FAULT = {
    "SNAPAUDIT_FIX_FAULT_AT": "1",
    "SNAPAUDIT_FIX_FAULT": "kill",
    "SNAPAUDIT_FIX_KILL_AFTER_STEP": "1",
    "SNAPAUDIT_FIX_KILL_BEFORE_JOURNAL": "1",
}


def test_the_installed_command_ignores_the_fault_variables(conn, libvirtd, tmp_path):
    armed = Scenario(libvirtd.uri, tmp_path / "armed")
    try:  # the variables are real: the test suite's own command dies at the first record
        killed = armed.apply(EVERY_FAULT)
        killed.communicate(timeout=120)
        assert killed.returncode == -signal.SIGKILL
    finally:
        armed.close()
    scenario = Scenario(libvirtd.uri, tmp_path / "installed")
    try:
        args = ["-c", scenario.uri, "--state-dir", str(scenario.state), "--domain", "installed"]
        proc = run_cli("fix", *args, "--apply", "--remove-originals", env=EVERY_FAULT)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"  converted; journal {scenario.journal()}\n" in proc.stdout
        assert scenario.check("--resume") == []
    finally:
        scenario.close()


def test_no_module_of_the_package_arms_a_fault_point():
    package = Path(__file__).parent.parent / "auditor"
    arming = [
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if "SNAPAUDIT_FIX_" in path.read_text() or "faults.install" in path.read_text()
    ]
    assert arming == []
