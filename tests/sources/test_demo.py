"""The built-in demo host as a new user meets it: named `demo`, and the same mix of findings
whatever the date."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from auditor.pipeline import DEMO_AS_OF, DEMO_HOST, run
from tests.helpers import fixture_uri


@pytest.fixture(autouse=True)
def unpinned(monkeypatch):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)


def test_the_demo_is_named_demo_in_every_record():
    result, _ = run([], demo=True)
    assert [(s.host.uri, s.host.hostname) for s in result.hosts] == [("demo", "demo")]
    records = [*result.findings, *result.snapshots, *(d for h in result.hosts for d in h.domains)]
    assert records and {r.host for r in records} == {DEMO_HOST}


def test_the_demo_alone_is_audited_a_few_days_after_its_snapshots():
    result, _ = run([], demo=True)
    assert result.generated_at == DEMO_AS_OF
    newest = max(s.created for s in result.snapshots if s.created)
    assert 0 < (DEMO_AS_OF - newest).days < 7
    aged = sorted(f.snapshot for f in result.findings if f.rule == "SNAP013")
    assert aged == ["before-schema-migration", "golden-image-2014", "lvm-root-offline"]
    assert result.duration is not None  # nothing pinned it


def test_a_moment_the_user_gives_wins():
    later = datetime(2027, 1, 1, tzinfo=UTC)
    result, _ = run([], demo=True, as_of=later)
    assert result.generated_at == later
    dated = {s.name for s in result.snapshots if s.created}
    assert {f.snapshot for f in result.findings if f.rule == "SNAP013"} == dated


def test_beside_other_hosts_the_clock_is_the_real_one():
    """Other hosts' snapshots must not look young: the demo's clock is for the demo alone."""
    result, _ = run([fixture_uri("rules/SNAP013.xml")], demo=True)
    assert [s.host.uri for s in result.hosts][-1] == "demo"
    assert abs((result.generated_at - datetime.now(UTC)).total_seconds()) < 600
