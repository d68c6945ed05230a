"""A scan result with one of everything the reporters must render, built in memory so that
their output can be compared in full: a waived, a baselined and an unsuppressed finding, a
finding about an image, about a domain and about a host, a rule no longer installed, hostile
names, a host that could not be scanned, skipped snapshots, rule errors and unused waivers."""

from __future__ import annotations

from datetime import UTC, date, datetime

from auditor.model import (
    BaselineOutcome,
    DiskSource,
    Domain,
    Finding,
    Host,
    HostScan,
    Policy,
    RuleError,
    RulePolicy,
    ScanResult,
    Severity,
    Skipped,
    Snapshot,
    SnapshotDisk,
    Waiver,
    WaiverUse,
)

HV1 = "qemu+ssh://root@hv1/system"
HV2 = "qemu:///system"
UUID = "3f0c2a7e-1b5d-4c8e-9a61-2d7f4e8b0101"
HOSTILE = "<img src=x onerror=alert(1)>"
ODD = 'odd "name" \\ with\nnewline\x1b\x00'
GENERATED = datetime(2025, 11, 24, 16, 0, tzinfo=UTC)

WAIVER = Waiver(
    rule="SNAP001",
    reason="migration to external snapshots planned",
    owner="ops",
    expires=date(2026, 1, 31),
    domain="web",
    origin="snapaudit.toml:12",
)
EXPIRED = Waiver(
    rule="SNAP006",
    reason="scratch disk",
    owner="storage",
    expires=date(2025, 6, 30),
    origin="snapaudit.toml:20",
)


def snapshot(name: str, created: datetime | None) -> Snapshot:
    disk = SnapshotDisk(
        name="vda",
        mode="internal",
        overlay=None,
        state_image=DiskSource("file", "/images/web.qcow2", "qcow2"),
        device="disk",
        readonly=False,
    )
    return Snapshot(
        host=HV1,
        domain="web",
        domain_uuid=UUID,
        name=name,
        state="running",
        created=created,
        parent=None,
        current=False,
        description=None,
        memory="internal",
        memory_file=None,
        disks=(disk,),
    )


def finding(rule, name, severity, domain, subject, disk, message, **extra) -> Finding:
    return Finding(
        rule=rule,
        name=name,
        severity=severity,
        host=HV1,
        domain=domain,
        snapshot=subject,
        disk=disk,
        message=message,
        remediation=f"fix {name}",
        domain_uuid=UUID if domain else "",
        **extra,
    )


FINDINGS = (
    finding(
        "SNAP001", "internal-memory", Severity.ERROR, "web", "nightly 1", None,
        "memory state is stored inside the disk image (internal snapshot)", waiver=WAIVER,
    ),
    finding(
        "SNAP002", "internal-disk", Severity.ERROR, "web", HOSTILE, "vda",
        "disk vda is captured inside its own image (internal snapshot)",
    ),
    finding(
        "SNAP006", "disk-excluded", Severity.WARNING, "web", HOSTILE, "vdb",
        "writable disk vdb is not part of the snapshot", baselined=True,
    ),
    finding(
        "SNAP011", "unmanaged-internal", Severity.ERROR, "web", "", "vda",
        "image /images/web.qcow2 holds internal snapshot 'old' that libvirt has no metadata for",
        image="/images/web.qcow2", tag="old",
    ),
    finding(
        "ACME001", "acme-domain", Severity.WARNING, "web", "", None,
        "domain has no owner tag",
    ),
    finding(
        "HOST001", "no-external-revert", Severity.WARNING, "", "", None,
        "libvirt on this host cannot revert to or delete external snapshots",
    ),
)  # fmt: skip

POLICY = Policy(
    rules=(
        RulePolicy("SNAP001", "internal-memory", Severity.ERROR, {}),
        RulePolicy("SNAP002", "internal-disk", Severity.ERROR, {}),
        RulePolicy("SNAP006", "disk-excluded", Severity.WARNING, {}),
        RulePolicy("SNAP011", "unmanaged-internal", Severity.ERROR, {}),
        RulePolicy("SNAP013", "snapshot-age", Severity.ERROR, {"max_age_days": 30}),
        RulePolicy("HOST001", "no-external-revert", Severity.WARNING, {}),
    ),
    sources=("snapaudit.toml",),
)


def sample_result() -> ScanResult:
    snapshots = (
        snapshot("nightly 1", datetime(2025, 11, 20, tzinfo=UTC)),
        snapshot(HOSTILE, datetime(2025, 11, 1, 12, 30, tzinfo=UTC)),
        snapshot(ODD, datetime(2025, 11, 24, 15, 0, tzinfo=UTC)),
    )
    hv1 = HostScan(
        host=Host(HV1, "hv1.example.com", "11.3.0", "9.2.0"),
        domains=(
            Domain(HV1, "web", UUID, (), snapshots),
            Domain(HV1, "db", "3f0c2a7e-1b5d-4c8e-9a61-2d7f4e8b0202", (), ()),
        ),
        skipped=(
            Skipped(HV1, "db", "gone", "cannot read the snapshot XML: I/O error"),
            Skipped(HV1, "db", "deleted", "snapshot disappeared during the scan", vanished=True),
        ),
    )
    hv2 = HostScan(host=Host(HV2, error="Failed to connect socket: Connection refused"))
    return ScanResult(
        generated_at=GENERATED,
        hosts=(hv1, hv2),
        findings=FINDINGS,
        rule_errors=(
            RuleError("SNAP004", "raised ValueError: bad state", HV1, "web", "nightly 1"),
            RuleError("acme-broken", "failed to load acme:rule: ImportError: no acme"),
        ),
        waivers=(WaiverUse(WAIVER, "active", 1), WaiverUse(EXPIRED, "expired", 0)),
        baseline=BaselineOutcome("baseline.json", known=1, new=5, fixed=2),
        policy=POLICY,
        duration=12.5,
    )
