"""The JSON report's records are spelled out as text for speed: that text must be, byte for
byte, what json's encoder makes of the same records as dicts, whatever the values hold; and
the report is made in pieces that a writer writes one by one."""

from __future__ import annotations

import dataclasses
import enum
import json
from datetime import UTC, datetime

import pytest

from auditor.model import (
    DiskSource,
    Domain,
    FileFacts,
    Host,
    HostScan,
    ScanResult,
    Snapshot,
    SnapshotDisk,
)
from auditor.reports import json as json_report
from tests.sample_results import FINDINGS, HOSTILE, ODD, sample_result

HOST = "qemu:///system"
UUID = "00000000-0000-4000-8000-000000000001"
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode


def encoded(report: dict) -> str:
    """The report's layout, made by the encoder alone: pretty at the top, one compact line
    per record below."""
    parts = []
    for key, value in report.items():
        if isinstance(value, list) and value:
            text = "[\n" + ",\n".join(f"    {_dumps(item)}" for item in value) + "\n  ]"
        else:
            text = _dumps(value)
        parts.append(f"  {_dumps(key)}: {text}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


class Mode(enum.StrEnum):
    EXTERNAL = "external"


def disk(name: str = "vda", **changes) -> SnapshotDisk:
    plain = SnapshotDisk(
        name=name,
        mode="external",
        overlay=DiskSource("file", f"/images/{name}.snap", "qcow2"),
        state_image=DiskSource("file", f"/images/{name}.qcow2", "qcow2"),
        device="disk",
        readonly=False,
    )
    return dataclasses.replace(plain, **changes)


def snap(name: object, disks: tuple = (), **changes) -> Snapshot:
    plain = Snapshot(
        host=HOST,
        domain="vm",
        domain_uuid=UUID,
        name=name,
        state="shutoff",
        created=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        parent=None,
        current=False,
        description=None,
        memory="no",
        memory_file=None,
        disks=disks,
    )
    return dataclasses.replace(plain, **changes)


ODD_SNAPSHOTS = (
    snap("plain", (disk(), disk("vdb", readonly=True, device=None))),
    snap(HOSTILE, (), description=ODD, parent="plain", current=True),
    snap("é ü \u2028 \u2029 \U0001f600 \x7f \ud7ff", (disk(overlay=None, mode="internal"),)),
    snap("no storage", (disk(overlay=None, state_image=None, mode="no"),)),
    snap("an overlay without a state image", (disk(state_image=None),)),
    snap("a path of None", (disk(overlay=DiskSource("network", None, None)),)),
    snap("ancient", created=datetime(999, 1, 1, tzinfo=UTC)),
    snap("no time", created=None, memory="external", memory_file="/images/vm.mem"),
    snap("memory on a file not checked", memory="external", memory_file="/gone.mem"),
    # Values of types a source should never give: the encoder decides what they become.
    snap(7, description=42, current=None),
    snap("mode as an enum", (disk(mode=Mode.EXTERNAL),), state=Mode.EXTERNAL),
    snap("readonly as an int", (disk(readonly=1),)),
    snap(("a", "tuple"), (disk(name=3.5),)),
)
FILES = {
    "/images/vda.snap": FileFacts("/images/vda.snap", True, size=196608),
    "/images/vda.qcow2": FileFacts("/images/vda.qcow2", True, size=0, backing_chain=("/b",)),
    "/images/vdb.snap": FileFacts("/images/vdb.snap", True, size=True),  # not an int
    "/images/vdb.qcow2": FileFacts("/images/vdb.qcow2", False),
    "/images/vm.mem": FileFacts("/images/vm.mem", True, size=1 << 40),
}


def odd_result(files: dict | None) -> ScanResult:
    domain = Domain(HOST, "vm", UUID, (), ODD_SNAPSHOTS)
    odd_findings = (
        dataclasses.replace(FINDINGS[0], remediation=None, baselined=1),
        dataclasses.replace(FINDINGS[1], image="é\u2028", message=ODD, baselined=True),
    )
    return dataclasses.replace(
        sample_result(),
        hosts=(HostScan(Host(HOST), (domain,), files=files),),
        findings=FINDINGS + odd_findings,
    )


@pytest.mark.parametrize(
    "result",
    [sample_result(), odd_result(None), odd_result(FILES), odd_result({})],
    ids=["sample", "odd", "odd-files", "odd-no-facts"],
)
def test_records_spelled_out_are_the_encoders_text(result):
    report = json_report.report_dict(result)
    assert len(report["snapshots"]) == len(result.snapshots)
    assert json_report.render(result) == encoded(report)


def test_a_large_report_comes_in_pieces_of_about_a_thousand_records():
    domain = Domain(HOST, "vm", UUID, (), tuple(snap(f"s{i}", (disk(),)) for i in range(2500)))
    result = ScanResult(datetime(2025, 1, 1, tzinfo=UTC), (HostScan(Host(HOST), (domain,)),), ())
    pieces = list(json_report.chunks(result))
    assert [piece.count('{"host": ') for piece in pieces] == [988, 1000, 512]
    same = "".join(pieces) == encoded(json_report.report_dict(result))
    assert same  # not compared in the assertion: a diff of two such texts takes minutes
