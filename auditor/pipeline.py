"""The audit pipeline: configuration + sources + audit + waivers + baseline -> ScanResult.

`snapaudit scan` runs all of it (`run`). `snapaudit fix` runs only the source and audit steps
(`audit_hosts`) with its own fixed rules and no configuration, waivers or baseline, so that
nothing a site configured can hide a domain from fix.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from datetime import UTC, datetime
from importlib.resources import as_file, files
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from auditor.model import (
    Domain,
    Finding,
    HostScan,
    Policy,
    RuleError,
    ScanResult,
    Skipped,
    Snapshot,
)
from auditor.rule import Rule

if TYPE_CHECKING:
    from auditor.policy.config import Config

# Called with (host uri, domains done, domains total) as the scan goes.
Progress = Callable[[str, int, int], None]

# The built-in demo host as every report names it, rather than by the path of the file it is
# read from inside the installed package.
DEMO_HOST = "demo"
# The demo's snapshots were taken up to 2025-11-24: audited alone, it is audited as of three
# days later, so that its report shows the same mix of findings whatever the date. A moment
# the user gives (--as-of) wins.
DEMO_AS_OF = datetime(2025, 11, 27, tzinfo=UTC)


def run(
    uris: Sequence[str | None],
    *,
    demo: bool = False,
    check_files: bool | None = None,
    config_file: Path | None = None,
    select: Sequence[str] = (),
    ignore: Sequence[str] = (),
    fail_on: str | None = None,
    timeout: float | None = None,
    baseline: Path | None = None,
    progress: Progress | None = None,
    offline: Sequence[Path] = (),
    domain_xml: Path | None = None,
    host_name: str | None = None,
    workers: int | None = None,
    as_of: datetime | None = None,
) -> tuple[ScanResult, Config]:
    """Audit URIS, the OFFLINE bundles and metadata directories, and the demo host (libvirt's
    default URI when there is none of them) under the configuration and command-line
    choices, then apply waivers and the baseline. The demo host is named DEMO_HOST, and
    audited alone it is audited as of DEMO_AS_OF unless AS_OF is given. Raises ConfigError,
    BaselineError or NotASource, before anything is scanned, when one of them cannot be
    used."""
    from auditor.engine.registry import load_rules
    from auditor.policy.config import find_config, load_config
    from auditor.policy.selection import selected_rules, with_command_line
    from auditor.policy.waivers import apply_baseline, apply_waivers, read_baseline

    all_rules, load_errors = load_rules()
    found, notes = find_config(config_file)
    config = dataclasses.replace(load_config(found, all_rules), notes=notes)
    config = with_command_line(config, all_rules, select, ignore, fail_on, timeout)
    rules, policy = selected_rules(config, all_rules)
    known = read_baseline(baseline) if baseline else None
    for path in offline:  # bundles and metadata directories: imported only when named
        from auditor.sources.offline.source import check_source

        check_source(path)

    pinned = as_of is not None or "SOURCE_DATE_EPOCH" in os.environ  # nothing varies
    if demo and as_of is None and not uris and not offline:
        as_of = DEMO_AS_OF
    started = time.monotonic()
    with demo_node_file() if demo else nullcontext() as demo_path:
        targets = list(uris)
        demo_uri = f"test://{demo_path}" if demo else None
        if demo_uri:
            targets.append(demo_uri)
            progress = _renamed_progress(progress, demo_uri, DEMO_HOST)
        result = audit_hosts(
            targets or ([] if offline else [None]),
            rules,
            check_files=check_files,
            progress=progress,
            load_errors=load_errors,
            policy=policy,
            timeout=config.timeout.value,
            offline=[(p, domain_xml, host_name) for p in offline],
            workers=workers,
            as_of=as_of,
        )
        if demo_uri:  # before waivers and baselines, which name hosts as reports show them
            result = _renamed_host(result, demo_uri, DEMO_HOST)
    result = apply_waivers(result, config.waivers, result.generated_at.date())
    if known is not None and baseline is not None:
        result = apply_baseline(result, known, baseline)
    if not pinned:
        result = dataclasses.replace(result, duration=round(time.monotonic() - started, 3))
    return result, config


def audit_hosts(
    uris: Sequence[str | None],
    rules: Sequence[Rule],
    *,
    check_files: bool | None = None,
    progress: Progress | None = None,
    load_errors: Sequence[RuleError] = (),
    policy: Policy | None = None,
    timeout: float | None = None,
    offline: Sequence[tuple[Path, Path | None, str | None]] = (),
    workers: int | None = None,
    as_of: datetime | None = None,
) -> ScanResult:
    """The source and audit steps: scan every host at once (each result in the order of
    URIS), then run RULES over them with POLICY's severities and parameters (default: the
    rules' own). A host that cannot be scanned is in the result with its error. Ages are
    measured at AS_OF (default: now), and the report is dated by report_time(AS_OF)."""
    from auditor.engine.audit import Auditor, audit, default_policy
    from auditor.sources.live.fleet import scan_hosts

    # Each domain is audited as soon as it is read, while the daemon answers for the others;
    # so the clock for ages is read once, before the scan.
    auditor = Auditor(rules, as_of or datetime.now(UTC), policy or default_policy(rules))
    by_host: dict[int, dict] = {}  # host position -> (domain, uuid) -> (findings, errors)

    def on_domain(index: int, domain: Domain) -> None:  # only hosts without file checks
        by_host.setdefault(index, {})[domain.name, domain.uuid] = auditor.domain(
            domain.host, domain, None
        )

    by_index: dict[int, HostScan] = {}
    audited = {}
    found = scan_hosts(uris, progress, check_files, timeout, workers, on_domain)
    for index, host_scan in found:
        by_index[index] = host_scan = _with_files_not_read(host_scan)
        audited[index] = _host_findings(auditor, host_scan, by_host.pop(index, {}))
    scans = [by_index[index] for index in range(len(uris))]  # every position, once
    for path, domain_xml, host_name in offline:  # (path, --domain-xml, --host-name)
        from auditor.sources.offline.source import read_source

        # Without file checks, a directory's domains are audited where they are read (in
        # worker processes), and only their model and findings are kept.
        done: dict = {}
        scan = read_source(
            path,
            domain_xml=domain_xml,
            host_name=host_name,
            check_files=bool(check_files),
            check=lambda domain: auditor.domain(domain.host, domain, None),
            checked=done,
            timeout=timeout,
        )
        scan = _with_files_not_read(scan)
        if done:
            audited[len(scans)] = _host_findings(auditor, scan, done)
        scans.append(scan)
    result = audit(scans, rules, load_errors, auditor.now, auditor.policy, audited)
    return dataclasses.replace(result, generated_at=report_time(as_of))


def domains_with_findings(host: str, codes: Sequence[str]) -> tuple[list[str], str | None]:
    """The domains of HOST in which the rules CODES find something (what fix converts when
    no domain is named), and the host's error if it could not be scanned."""
    from auditor.engine.registry import load_rules

    rules, _ = load_rules()
    result = audit_hosts([host], [r for r in rules if r.code in codes], check_files=False)
    (scan,) = result.hosts
    return sorted({f.domain for f in result.findings}), scan.host.error


def _with_files_not_read(scan: HostScan) -> HostScan:
    """SCAN with a skipped item for each file it needed and could not read (exit 3)."""
    from auditor.sources.files.checks import not_read

    if missed := not_read(scan):
        items = sorted(
            (*scan.skipped, *missed), key=lambda s: (s.domain or "", s.snapshot or "", s.reason)
        )
        return dataclasses.replace(scan, skipped=tuple(items))
    return scan


def _host_findings(auditor, scan: HostScan, done: Mapping) -> tuple[list, list]:
    """The host's findings in `audit`'s order, from those of its domains audited as they
    were read (DONE) and the host's own rules."""
    findings, errors = auditor.host(scan)
    # Domains whose files were checked are audited once the host is complete: whether an
    # image is referenced by no domain (SNAP018) is known only then.
    for domain in scan.domains:
        found, failed = done.get((domain.name, domain.uuid)) or auditor.domain(
            scan.host.uri, domain, scan.files
        )
        findings += found
        errors += failed
    return findings, errors


def demo_node_file():
    """The built-in demo host: a test-driver node file shipped with the package."""
    return as_file(files("auditor.sources") / "demo" / "demo-host.xml")


def _renamed_host(result: ScanResult, uri: str, name: str) -> ScanResult:
    """RESULT with the host scanned at URI named NAME, as its URI and its host name, in every
    record that names it."""

    def named(record: _Named) -> _Named:
        return dataclasses.replace(record, host=name) if record.host == uri else record

    hosts = []
    for scan in result.hosts:
        if scan.host.uri == uri:
            domains = tuple(
                dataclasses.replace(d, host=name, snapshots=tuple(map(named, d.snapshots)))
                for d in scan.domains
            )
            scan = dataclasses.replace(
                scan,
                host=dataclasses.replace(scan.host, uri=name, hostname=name),
                domains=domains,
                skipped=tuple(map(named, scan.skipped)),
            )
        hosts.append(scan)
    return dataclasses.replace(
        result,
        hosts=tuple(hosts),
        findings=tuple(map(named, result.findings)),
        rule_errors=tuple(map(named, result.rule_errors)),
    )


_Named = TypeVar("_Named", Finding, RuleError, Skipped, Snapshot)


def _renamed_progress(progress: Progress | None, uri: str, name: str) -> Progress | None:
    """PROGRESS, told of the host at URI as NAME."""
    if progress is None:
        return None
    report = progress
    return lambda host, done, total: report(name if host == uri else host, done, total)


def report_time(as_of: datetime | None = None) -> datetime:
    """When the report says it was made: AS_OF (--as-of, which also moves the clock ages are
    measured against), else SOURCE_DATE_EPOCH, which reproducible builds set to pin what a
    build writes and which must not silence age checks, else now."""
    if as_of is not None:
        return as_of
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.isdigit():
        return datetime.fromtimestamp(int(epoch), tz=UTC)
    return datetime.now(UTC)
