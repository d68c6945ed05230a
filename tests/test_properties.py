"""Property-based tests: whatever libvirt (or an attacker posing as it) writes in snapshot XML,
and whatever a report file holds, snapaudit gives a verdict or one recorded error, never an
exception. Bounded (max_examples, deadline) so the suite stays fast."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache
from xml.sax.saxutils import escape, quoteattr

import jsonschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auditor.engine.audit import audit
from auditor.engine.registry import load_rules
from auditor.model import Domain, Host, HostScan, Snapshot
from auditor.reports import FORMATS, render
from auditor.reports.loader import ReportError, load_report
from auditor.reports.validate import report_schema
from auditor.sources.xml.parser import SnapshotXMLError, parse_snapshot
from tests.helpers import run_cli
from tests.sample_results import sample_result

NOW = datetime(2025, 11, 24, tzinfo=UTC)
FAST = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)

# libvirt's value sets (domain_conf.c, snapshot_conf.c), plus what no libvirt writes.
STATES = ["running", "blocked", "paused", "shutdown", "shutoff", "crashed", "disk-snapshot"]
STATES += ["nostate", "pmsuspended", "", "RUNNING", "shutoff\n"]
MODES = ["no", "internal", "external", "manual", "", "yes"]
DISK_TYPES = ["file", "block", "network", "dir", "volume", "nvme", "vhostuser", "vhostvdpa", ""]
ODD = [
    "<img src=x onerror=alert(1)>",
    "</style><script>alert(1)</script>",
    "javascript:alert(1)",
    "\u202eevil\u202c",
    "\u2066rtl\u2069",
    "a\x1b]8;;x\x07b",
    "tab\tnew\nline",
    "\x00nul",
    "\x7f\x85",
    "\ud7ff\ue000\U0010ffff",
    "&amp;&#1;",
    " ",
    "..",
    "/",
    "a" * 300,
]
names = st.one_of(st.sampled_from(ODD), st.text(max_size=12))


def element(tag: str, text: str) -> str:
    return f"<{tag}>{escape(text)}</{tag}>"


def attrs(**values: str | None) -> str:
    return "".join(f" {k}={quoteattr(v)}" for k, v in values.items() if v is not None)


def maybe(strategy):
    return st.one_of(st.none(), strategy)


@st.composite
def repeated(draw, strategy, most=2):
    """An element missing, once, or repeated: libvirt never repeats, a forged file may."""
    return "".join(draw(st.lists(strategy, max_size=most)))


@st.composite
def source(draw):
    kind = draw(st.sampled_from(["file", "dev", "dir", "name", "pool", None]))
    extra = draw(maybe(st.sampled_from(["rbd", "nbd", "iscsi", "gluster", ""])))
    hosts = draw(repeated(st.builds(lambda n: f"<host{attrs(name=n, port='1')}/>", names)))
    value = draw(names)
    return f"<source{attrs(**({kind: value} if kind else {}), protocol=extra)}>{hosts}</source>"


@st.composite
def snapshot_disk(draw):
    return (
        f"<disk{attrs(name=draw(maybe(names)), snapshot=draw(maybe(st.sampled_from(MODES))))}"
        f"{attrs(type=draw(maybe(st.sampled_from(DISK_TYPES))))}>"
        f"{draw(repeated(st.builds(lambda t: f'<driver{attrs(type=t)}/>', names)))}"
        f"{draw(repeated(source()))}</disk>"
    )


def driver(kind: str) -> str:
    return f"<driver{attrs(name='qemu', type=kind)}/>"


AGENT = "<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>"


@st.composite
def domain_disk(draw):
    device = draw(maybe(st.sampled_from(["disk", "cdrom", "floppy", "lun"])))
    return (
        f"<disk{attrs(type=draw(maybe(st.sampled_from(DISK_TYPES))), device=device)}>"
        f"{draw(repeated(st.builds(driver, names)))}"
        f"{draw(repeated(source()))}"
        f"{draw(repeated(st.builds(lambda d: f'<target{attrs(dev=d)}/>', names)))}"
        f"{'<readonly/>' if draw(st.booleans()) else ''}</disk>"
    )


@st.composite
def snapshot_xml(draw):
    parts = [
        draw(repeated(st.builds(element, st.just("name"), names))),
        draw(repeated(st.builds(element, st.just("description"), names), 1)),
        draw(repeated(st.builds(element, st.just("state"), st.sampled_from(STATES)))),
        draw(
            repeated(
                st.builds(
                    element,
                    st.just("creationTime"),
                    st.one_of(st.integers(-(2**70), 2**70).map(str), names),
                )
            )
        ),
        draw(repeated(st.builds(lambda n: f"<parent>{element('name', n)}</parent>", names), 1)),
        draw(
            repeated(
                st.builds(
                    lambda m, f: f"<memory{attrs(snapshot=m, file=f)}/>",
                    maybe(st.sampled_from(MODES)),
                    maybe(names),
                )
            )
        ),
        "<disks>" + draw(repeated(snapshot_disk(), 4)) + "</disks>",
        draw(
            repeated(
                st.builds(
                    lambda disks, agent: (
                        f"<domain type='kvm'><devices>{disks}</devices>"
                        + (AGENT if agent else "")
                        + "</domain>"
                    ),
                    repeated(domain_disk(), 4),
                    st.booleans(),
                ),
                1,
            )
        ),
        draw(st.sampled_from(["", "<inactiveDomain/>", "<cookie/>", "<unknown>x</unknown>"])),
    ]
    order = draw(st.permutations(parts))
    return "<domainsnapshot>" + "".join(order) + "</domainsnapshot>"


@cache
def rules():
    return load_rules()[0]


@FAST
@given(snapshot_xml(), st.booleans())
def test_snapshot_xml_gives_a_verdict_or_a_recorded_error(xml, current):
    try:
        snap = parse_snapshot(xml, host="test:///h", domain="vm", domain_uuid="u", current=current)
    except SnapshotXMLError as exc:
        assert str(exc)  # recorded as the snapshot's skip reason
        return
    assert isinstance(snap, Snapshot)
    scan = HostScan(Host("test:///h"), (Domain("test:///h", "vm", "u", (), (snap,)),))
    result = audit([scan], rules(), now=NOW)
    # A rule that raised is recorded in rule_errors, not propagated.
    assert {f.domain for f in result.findings} <= {"vm", ""}
    for name in FORMATS:
        assert render(name, result)


# --- report files mutated field by field -------------------------------------------------


@cache
def base_reports() -> tuple[str, ...]:
    demo = run_cli("scan", "--demo", "-f", "json")
    assert demo.returncode == 1, demo.stderr
    return (demo.stdout, render("json", sample_result()))


def paths(node, prefix=()):
    """Every place in a JSON document a mutation can hit."""
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from paths(value, (*prefix, index))


json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**64), 2**64),
        st.sampled_from([0, -1, 1, 2**63 - 1, 2**63, 10**18]),
        st.floats(allow_nan=False, allow_infinity=False),
        st.sampled_from(["", "error", "warning", "active", "external", "2025-11-24"]),
        st.sampled_from(["2025-11-24T00:00:00Z", "2025-02-30T00:00:00Z", "9999-99-99T99:99:99Z"]),
        st.sampled_from(["\ud800", "2025-11-24T00:00:00Z\n", "snapaudit/report/v1"]),
        names,
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(names, inner, max_size=3)),
    max_leaves=6,
)


def similar(value):
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int):
        return st.one_of(st.integers(0, 2**63 - 1), st.sampled_from([0, 1, 2**63 - 1]))
    if isinstance(value, float):
        return st.floats(0, 1e300)
    if isinstance(value, str):
        return st.one_of(names, st.sampled_from(["", value + "\u202e", "<b>" + value]))
    if value is None:
        return st.one_of(st.none(), names)
    return st.just(value)


@st.composite
def mutated_report(draw):
    document = json.loads(draw(st.sampled_from(base_reports())))
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(list(paths(document))[1:]))
        parent = document
        for step in where[:-1]:
            parent = parent[step]
        # Mostly a value of the same type, which the schema accepts more often than not, so
        # that the renderers see the odd values too, not only the loader.
        action = draw(st.sampled_from(["similar"] * 4 + ["replace", "delete", "add"]))
        if action == "similar":
            parent[where[-1]] = draw(similar(parent[where[-1]]))
        elif action == "delete" and isinstance(parent, dict):
            del parent[where[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(names)] = draw(json_values)
        else:
            parent[where[-1]] = draw(json_values)
    return document


@FAST
@given(mutated_report())
def test_a_mutated_report_loads_and_renders_or_is_one_line(tmp_path_factory, document):
    path = tmp_path_factory.getbasetemp() / "mutated.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    try:
        result = load_report(path)
    except ReportError as exc:
        assert str(exc).startswith(f"{path}: ") and "\n" not in str(exc)
        return
    # Whatever loads satisfies the shipped schema, and renders in every format.
    jsonschema.Draft202012Validator(report_schema()).validate(document)
    for name in FORMATS:
        assert render(name, result)


@settings(max_examples=6, deadline=None, derandomize=True)
@given(mutated_report(), st.sampled_from(sorted(FORMATS)))
def test_a_mutated_report_through_the_command_line(tmp_path_factory, document, name):
    path = tmp_path_factory.getbasetemp() / "cli.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    proc = run_cli("merge", "-f", name, str(path))
    if proc.returncode == 0:
        assert proc.stdout and not proc.stderr
    else:
        assert proc.returncode == 2
        assert proc.stdout == ""
        assert proc.stderr.startswith(f"snapaudit: {path}: ")
        assert proc.stderr.count("\n") == 1
