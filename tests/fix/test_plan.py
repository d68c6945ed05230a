"""Fix mode's pure parts, no hypervisor: file names, the snapshot tree, XML rewriting, the
planner's decisions, the journal's crash rules and the lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import pytest

from auditor.fix.domain_lock import LockBusy, domain_lock
from auditor.fix.facts import Filesystem
from auditor.fix.journal import FINISHED, Journal, JournalError
from auditor.fix.names import after_name, image_name, journal_name, slug
from auditor.fix.plan import CreateImage, DomainPlan, Options, Outcome, RedefineSnapshot
from auditor.fix.plan_json import plan_from_json, plan_to_json
from auditor.fix.planner import plan_domain
from auditor.fix.tree import captures, parents_first
from auditor.fix.xml_rewrite import external_snapshot
from auditor.model import FileFacts
from auditor.reports.fixplan import render_domain, render_json
from auditor.sources.xml.parser import parse_domain_disks
from tests.fix.plans import DOMAIN_XML, TREE, UUID, MiB, facts, model, snapshot_xml
from tests.helpers import FIXTURES, REPO

IMAGE = "/images/web01.qcow2"
FIX_MODULES = sorted(REPO.joinpath("auditor", "fix").glob("[!_]*.py"))


# File names


def test_image_names_are_readable_safe_and_distinct():
    name = image_name("web01", UUID, "vda", "<img src=x onerror=alert(1)>", IMAGE)
    assert name == "web01.vda.img_src_x_onerror_alert_1.c48d817e.qcow2"
    assert image_name("web01", UUID, "vda", None, IMAGE) == "web01.vda.current.6d9ce299.qcow2"
    # A snapshot named "current" is not the current state.
    assert image_name("web01", UUID, "vda", "current", IMAGE) == "web01.vda.current.a99d2c1e.qcow2"
    hostile = ["../../etc/passwd", "a/b", "a b", ".hidden", "", "\x1b[31m", "名前", "x" * 300]
    names = {image_name("we/b", UUID, "vda", s, IMAGE) for s in hostile}
    assert len(names) == len(hostile)  # the hash parts tell slug collisions apart
    for name in names:
        assert "/" not in name and not name.startswith(".") and ".." not in name
        assert len(name.encode()) < 120 and name.isascii() and name.isprintable()
    # Another conversion of the same domain (a new source image) never reuses a name.
    assert image_name("web01", UUID, "vda", "s", IMAGE) != image_name(
        "web01", UUID, "vda", "s", "/images/web01.vda.current.0a6b8e63.qcow2"
    )


def test_other_names():
    assert slug("a/b c.d") == "a_b_c_d"
    assert slug("///") == "x"
    assert after_name("/i/web01.vda.s.12345678.qcow2") == "/i/web01.vda.s.12345678.after.qcow2"
    when = datetime(2026, 11, 25, 19, 9, 4, 123456, tzinfo=UTC)
    assert journal_name("web 01", UUID, when) == f"web_01.{UUID}.20261125T190904123456Z.journal"


# Snapshot tree


def test_parents_first_and_captures_per_disk():
    # a ─┬─ b ── d        vdb appears with c
    #    └─ c (current)
    snaps = [
        model(snapshot_xml("d", "b", 4, {"vda": "internal"})),
        model(snapshot_xml("c", "a", 3, {"vda": "internal", "vdb": "internal"}), True),
        model(snapshot_xml("b", "a", 2, {"vda": "internal"})),
        model(snapshot_xml("a", None, 1, {"vda": "internal"})),
    ]
    assert [s.name for s in parents_first(snaps)] == ["a", "b", "c", "d"]
    found = [
        (c.disk, c.snapshot, c.base) for c in captures(snaps, "c", parse_domain_disks(DOMAIN_XML))
    ]
    assert found == [
        ("vda", "a", None),
        ("vda", "b", "a"),
        ("vda", "c", "a"),
        ("vda", "d", "b"),
        ("vda", None, "c"),
        ("vdb", "c", None),  # its oldest state: a full image
        ("vdb", None, "c"),
    ]
    # Without a current snapshot, the disk now builds on the newest snapshot holding it.
    assert captures(snaps, None, parse_domain_disks(DOMAIN_XML))[4].base == "d"


# XML rewriting


def test_external_snapshot_xml(request):
    original = (FIXTURES / "fix" / "running-snapshot.xml").read_text()
    xml = external_snapshot(
        original,
        states={"vda": "/new/web01.vda.checkpoint.qcow2"},
        overlays={"vda": "/new/web01.vda.child.qcow2"},
        revert_overlays={"vda": "/new/web01.vda.current.qcow2"},
        drop_memory=True,
    )
    golden = FIXTURES / "fix" / "running-snapshot.external.xml"
    if request.config.getoption("--update-golden"):
        golden.write_text(xml + "\n")
    assert xml + "\n" == golden.read_text()
    root = ET.fromstring(xml)
    assert root.findtext("state") == "disk-snapshot"
    assert root.find("memory").attrib == {"snapshot": "no"}
    assert root.find("domain/devices/graphics").get("passwd") == "s3cret"  # kept exactly


# The planner


def test_plan_is_data_and_round_trips_through_json():
    plan = plan_domain(facts(TREE, "b"), Options())
    assert plan.status == "ready"
    assert [s.kind for s in plan.steps] == [
        "create-image",
        "verify-image",
        "create-image",
        "verify-image",
        "create-image",
        "verify-image",
        "drop-snapshot-metadata",
        "drop-snapshot-metadata",
        "redefine-snapshot",
        "redefine-snapshot",
        "define-domain",
    ]
    first = plan.steps[0]
    assert isinstance(first, CreateImage) and first.backing is None and first.snapshot == "a"
    assert plan_from_json(json.loads(json.dumps(plan_to_json(plan, secrets=True)))) == plan
    public = json.dumps(plan_to_json(plan))
    assert "<domain" not in public and "restore" not in public  # XML holds secrets
    redefine_b = plan.steps[9]
    assert isinstance(redefine_b, RedefineSnapshot) and redefine_b.current
    assert redefine_b.overlays == {"vda": plan.images[2].path}  # the domain's top image


def test_refusals_from_facts():
    shortfall = plan_domain(
        facts(TREE, "b", filesystems={"/images": Filesystem(1, MiB)}), Options()
    )
    assert shortfall.refusals == (
        "not enough free space in /images: 6.0 MiB needed, 1.0 MiB available",
    )
    stranded_images = {
        "/images/web01-vda.qcow2": FileFacts(
            "/images/web01-vda.qcow2",
            True,
            format="qcow2",
            internal_snapshots=("a", "b", "b"),
            virtual_size=MiB,
            cluster_size=65536,
            length=1,
            mtime_ns=1,
        )
    }
    assert plan_domain(facts(TREE, "b", images=stranded_images), Options()).refusals == (
        "image /images/web01-vda.qcow2 holds two internal snapshots named 'b'",
    )
    taken = facts(
        TREE,
        "b",
        existing=frozenset(
            {"/images/" + image_name("web01", UUID, "vda", "a", "/images/web01-vda.qcow2")}
        ),
    )
    (reason,) = plan_domain(taken, Options()).refusals
    assert reason.endswith("already exists: move it away, or choose --target-dir")
    saved = plan_domain(facts(TREE, "b", managed_save=True), Options())
    assert saved.refusals == (
        "domain has a managed save image, which expects the current disks: start it and shut "
        "it down, or discard it (virsh -c qemu:///system managedsave-remove web01), then rerun",
    )
    both = snapshot_xml("a", None, 1, {"vda": "internal", "vdb": "internal"})
    excluded = snapshot_xml("c", "a", 3, {"vda": "internal", "vdb": "no"})
    assert plan_domain(facts([both, excluded], "c"), Options()).refusals == (
        "snapshot 'c' does not capture disk vdb, which other snapshots hold internally: it "
        "would keep pointing at the original image",
    )
    undefined = (
        "<domainsnapshot><name>d</name><state>shutoff</state><parent><name>a</name></parent>"
        "<creationTime>4</creationTime><memory snapshot='no'/>"
        "<disks><disk name='vda' snapshot='internal'/></disks></domainsnapshot>"
    )
    assert plan_domain(facts([TREE[0], undefined], "d"), Options()).refusals == (
        "snapshot 'd' has no domain definition to redefine it with",
    )


def test_refused_plan_renders_each_reason():
    reasons = ("domain is running: shut it down", "snapshot 'a\x1b[2J' is not internal")
    plan = DomainPlan("h", "we\x1bb", UUID, refusals=reasons)
    assert render_domain(Outcome(plan)) == (
        "\ndomain 'we\\x1bb': refused\n  - domain is running: shut it down\n"
        "  - snapshot 'a\\x1b[2J' is not internal\n"
    )
    # Stored as they are (journals, JSON plans); escaped only when printed as text.
    (shown,) = json.loads(render_json("h", [Outcome(plan)], apply=False))["domains"]
    assert shown["refusals"] == list(reasons)


# Import rules: the planner is pure, and fix mode never depends on the reporters.


def imported_by(code: str) -> set[str]:
    script = f"import sys\n{code}\nprint(' '.join(sorted(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return set(proc.stdout.split())


def test_the_planner_imports_no_libvirt():
    assert "libvirt" in imported_by("import auditor.fix.gather")  # the check can fail
    assert "libvirt" not in imported_by("import auditor.fix.planner")
    assert "libvirt" not in imported_by("import auditor.reports.fixplan")


def test_fix_mode_does_not_import_the_reporters():
    every = "\n".join(f"import auditor.fix.{m.stem}" for m in FIX_MODULES)
    modules = imported_by(every)
    assert {f"auditor.fix.{m.stem}" for m in FIX_MODULES} <= modules
    assert sorted(m for m in modules if m.startswith("auditor.reports")) == []


# Journal and lock


def test_journal_survives_a_torn_last_line_and_rejects_garbage(tmp_path):
    plan = plan_domain(facts(TREE, "b"), Options())
    path = tmp_path / "web01.journal"
    journal = Journal.create(path, "qemu:///system", plan)
    assert os.stat(path).st_mode & 0o777 == 0o600  # it holds the XML's secrets
    journal.step_done(1)
    journal.step_done(2)
    with path.open("a") as out:
        out.write('{"type": "done", "st')  # killed mid-write
    assert Journal.load(path).done == {1, 2}  # a reader ignores the torn line
    assert path.read_text().endswith('"st')
    loaded = Journal.load(path, repair=True)  # the next writer cuts it off first
    assert (loaded.done, loaded.plan, loaded.uri) == ({1, 2}, plan, "qemu:///system")
    loaded.step_done(3)
    loaded.finish()
    again = Journal.load(path)
    assert (again.done, again.state) == ({1, 2, 3}, FINISHED)

    with path.open("a") as out:
        out.write("not json\n")  # a complete line that is not JSON: corruption, not a crash
    with pytest.raises(JournalError, match="line 6 is not JSON"):
        Journal.load(path)
    other = tmp_path / "other.journal"
    other.write_text('{"schema": "something/else"}\n')
    with pytest.raises(JournalError, match="is not a snapaudit fix journal"):
        Journal.load(other)


def test_lock_is_exclusive_and_released(tmp_path):
    busy = pytest.raises(LockBusy, match="another snapaudit fix is working on this domain")
    with domain_lock(UUID, tmp_path) as path:
        assert path == tmp_path / f"{UUID}.lock"
        with busy, domain_lock(UUID, tmp_path):
            pass
        with domain_lock("another-uuid", tmp_path):
            pass
    with domain_lock(UUID, tmp_path):
        pass
    assert Path(tmp_path / f"{UUID}.lock").exists()
