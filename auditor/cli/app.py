"""Command line: wires sources, rules and reporters together; holds no audit logic."""

from __future__ import annotations

import dataclasses
import enum
import os
import sys
import time
from contextlib import nullcontext
from datetime import UTC, datetime
from importlib.resources import as_file, files
from pathlib import Path
from typing import Annotated

import typer

from auditor import __version__
from auditor.cli import exits
from auditor.cli.fix import fix
from auditor.model import Severity
from auditor.safefs import write_atomically

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Audit libvirt VM snapshots against RHEL 10's support rules.",
)


class FailOn(enum.StrEnum):
    error = "error"
    warning = "warning"
    info = "info"
    never = "never"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"snapaudit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    pass


def demo_node_file():
    """The built-in demo host: a test-driver node file shipped with the package."""
    return as_file(files("auditor.sources") / "demo" / "demo-host.xml")


@app.command()
def scan(
    connect: Annotated[
        list[str] | None,
        typer.Option(
            "--connect",
            "-c",
            metavar="URI",
            help="libvirt URI to audit (repeatable). Default: libvirt's default URI.",
        ),
    ] = None,
    demo: Annotated[
        bool, typer.Option("--demo", help="Audit the built-in demo host (no hypervisor needed).")
    ] = False,
    formats: Annotated[
        list[str] | None,
        typer.Option(
            "--format",
            "-f",
            metavar="FORMAT[:FILE]",
            help="Report format, optionally with the file to write it to (repeatable): "
            "text, json, html, sarif, junit, prometheus. Default: text.",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the report to FILE.", dir_okay=False),
    ] = None,
    fail_on: Annotated[
        FailOn | None,
        typer.Option(
            "--fail-on", help="Lowest severity that makes the exit code 1. Default: error."
        ),
    ] = None,
    check_files: Annotated[
        bool | None,
        typer.Option(
            "--check-files/--no-check-files",
            help="Inspect the image and memory files that snapshots name (qemu-img info, "
            "read-only). Default: only for local connections.",
        ),
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Configuration file. Default: ./snapaudit.toml, else /etc/snapaudit/config.toml.",
        ),
    ] = None,
    select: Annotated[
        list[str] | None,
        typer.Option(help="Rules to run, by code, name or tag (comma-separated, repeatable)."),
    ] = None,
    ignore: Annotated[
        list[str] | None,
        typer.Option(help="Rules not to run, by code, name or tag (comma-separated, repeatable)."),
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option(help="Fail only on findings that are not in this baseline file."),
    ] = None,
    write_baseline: Annotated[
        Path | None,
        typer.Option("--write-baseline", help="Record the current findings as a baseline."),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            metavar="SECONDS",
            help="Give up on a host that takes longer, connect included. Default: 300.",
        ),
    ] = None,
) -> None:
    """Audit every snapshot of every domain on one or more hosts (read-only)."""
    from auditor.cli.problems import problem_lines
    from auditor.engine.audit import audit
    from auditor.engine.registry import load_rules
    from auditor.policy.config import (
        ConfigError,
        find_config,
        load_config,
        selected_rules,
        with_command_line,
    )
    from auditor.policy.waivers import BaselineError, apply_baseline, apply_waivers, read_baseline
    from auditor.policy.waivers import write_baseline as save_baseline
    from auditor.reports.summary import summarize
    from auditor.sources.scanner import scan_hosts

    outputs = _outputs(formats, output)
    all_rules, load_errors = load_rules()
    try:
        config = load_config(find_config(config_file), all_rules)
        config = with_command_line(
            config, all_rules, _split(select), _split(ignore), fail_on and fail_on.value, timeout
        )
        rules, policy = selected_rules(config, all_rules)
        known = read_baseline(baseline) if baseline else None
    except (ConfigError, BaselineError) as exc:
        exits.error(str(exc))
        raise typer.Exit(exits.USAGE) from None

    started = time.monotonic()
    with demo_node_file() if demo else nullcontext() as demo_path:
        uris: list[str | None] = list(connect or [])
        if demo:
            uris.append(f"test://{demo_path}")
        if not uris:
            uris = [None]
        scans = [None] * len(uris)
        with _progress() as progress:
            for index, host_scan in scan_hosts(uris, progress, check_files, config.timeout.value):
                scans[index] = host_scan
    now = _report_time()
    result = audit(scans, rules, load_errors, now=now, policy=policy)
    result = apply_waivers(result, config.waivers, now.date())
    if known is not None:
        result = apply_baseline(result, known, baseline)
    if "SOURCE_DATE_EPOCH" not in os.environ:  # a pinned report leaves out what varies
        result = dataclasses.replace(result, duration=round(time.monotonic() - started, 3))
    if write_baseline:
        save_baseline(result, write_baseline)

    for name, path in outputs:
        _emit(name, path, result)
    # Problems go to stderr too, unless a text report on stdout already shows them.
    if any(path is not None or name != "text" for name, path in outputs):
        for line in problem_lines(result, [path for _, path in outputs]):
            exits.error(line)

    if not summarize(result).complete:
        raise typer.Exit(exits.INCOMPLETE)
    if _fails(result.findings, config.fail_on.value):
        raise typer.Exit(exits.FINDINGS)
    raise typer.Exit(exits.OK)


def _outputs(formats: list[str] | None, output: Path | None) -> list[tuple[str, Path | None]]:
    """(format, file or None for stdout) for each --format; -o names the file of a single
    format given without one."""
    from auditor.reports import FORMATS

    outputs = []
    for spec in formats or ["text"]:
        name, _, path = spec.partition(":")
        if name not in FORMATS:
            raise typer.BadParameter(
                f"unknown format {name!r} (known: {', '.join(FORMATS)})", param_hint="--format"
            )
        outputs.append((name, Path(path) if path else None))
    to_stdout = [i for i, (_, path) in enumerate(outputs) if path is None]
    if output is not None:
        if len(to_stdout) != 1:
            raise typer.BadParameter("-o needs exactly one --format without a file")
        outputs[to_stdout[0]] = (outputs[to_stdout[0]][0], output)
    elif len(to_stdout) > 1:
        raise typer.BadParameter("only one format can go to standard output", param_hint="--format")
    return outputs


def _split(values: list[str] | None) -> list[str]:
    return [v.strip() for value in values or () for v in value.split(",") if v.strip()]


@app.command("rules")
def list_rules() -> None:
    """List the available rules: code, name, severity and summary."""
    from auditor.engine.registry import load_rules

    rules, errors = load_rules()
    rows = [
        (r.code, r.name, r.severity.value, r.summary + ("" if r.enabled else " (off by default)"))
        for r in rules
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)] if rows else [0, 0, 0]
    for row in rows:
        typer.echo(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[3]
        )
    for error in errors:
        exits.error(f"rule {error.rule} not loaded: {error.message}")


@app.command("config")
def show_config(
    show: Annotated[bool, typer.Option("--show", help="Print the effective configuration.")] = (
        False
    ),
    config_file: Annotated[
        Path | None,
        typer.Option("--config", help="Configuration file (default: as `scan` finds it)."),
    ] = None,
) -> None:
    """Check the configuration; with --show, print every effective value and its origin."""
    from auditor.engine.registry import load_rules
    from auditor.policy.config import ConfigError, find_config, load_config
    from auditor.policy.config import show as render_config

    rules, _ = load_rules()
    try:
        config = load_config(find_config(config_file), rules)
    except ConfigError as exc:
        exits.error(str(exc))
        raise typer.Exit(exits.USAGE) from None
    if show:
        typer.echo(render_config(config, rules), nl=False)
    else:
        typer.echo(f"configuration OK: {', '.join(config.sources) or 'defaults only'}")


@app.command()
def explain(rule: Annotated[str, typer.Argument(help="Rule code or name, e.g. SNAP002.")]) -> None:
    """Explain a rule: what it checks, why, noncompliant and compliant XML, how to fix it."""
    from auditor.engine.registry import load_rules
    from auditor.rule import DOC_SECTIONS

    rules, _ = load_rules()
    wanted = rule.strip()
    match = next((r for r in rules if wanted.upper() == r.code or wanted.lower() == r.name), None)
    if match is None:
        exits.error(f"unknown rule {wanted!r}; `snapaudit rules` lists them")
        raise typer.Exit(exits.USAGE)
    typer.echo(f"{match.code} {match.name} ({match.severity.value})")
    typer.echo(match.summary)
    if match.tags:
        typer.echo(f"Tags: {', '.join(match.tags)}")
    for section in DOC_SECTIONS:
        typer.echo(f"\n{section}:")
        for line in match.sections.get(section, "").splitlines():
            typer.echo(f"  {line}".rstrip())


def _progress():
    """A progress bar on stderr, only when stderr is a terminal."""
    if not sys.stderr.isatty():
        return nullcontext()
    from auditor.cli.progress import HostProgress

    return HostProgress()


def _report_time() -> datetime:
    # SOURCE_DATE_EPOCH pins the report's timestamp, for reproducible reports and exact tests.
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.isdigit():
        return datetime.fromtimestamp(int(epoch), tz=UTC)
    return datetime.now(UTC)


app.command("fix")(fix)


class DiffFormat(enum.StrEnum):
    text = "text"
    json = "json"


@app.command("diff")
def diff_reports(
    old: Annotated[Path, typer.Argument(metavar="OLD.json", help="The earlier JSON report.")],
    new: Annotated[Path, typer.Argument(metavar="NEW.json", help="The later JSON report.")],
    output_format: Annotated[
        DiffFormat, typer.Option("--format", "-f", help="Output format.")
    ] = DiffFormat.text,
    fail_on: Annotated[
        FailOn,
        typer.Option(
            "--fail-on",
            help="Lowest severity of a new, unsuppressed finding that makes the exit code 1.",
        ),
    ] = FailOn.error,
) -> None:
    """Compare two JSON reports: new, fixed and unchanged findings, matched by fingerprint.

    Findings the new report could not check (host not scanned, snapshot skipped) are
    unverified, not fixed. Exit 1 when a new finding at or above --fail-on is neither waived
    nor baselined; 3 when the new report is incomplete; 2 when a file is not a report.
    """
    from auditor.reports.diff import diff_reports as compare
    from auditor.reports.diff import render_json, render_text
    from auditor.reports.summary import summarize

    old_result, new_result = _load_reports([old, new])
    diff = compare(old_result, new_result)
    sys.stdout.write(render_json(diff) if output_format is DiffFormat.json else render_text(diff))
    if not summarize(new_result).complete:
        raise typer.Exit(exits.INCOMPLETE)
    if _fails((e.finding for e in diff.added), fail_on.value):
        raise typer.Exit(exits.FINDINGS)
    raise typer.Exit(exits.OK)


@app.command("merge")
def merge_reports(
    reports: Annotated[
        list[Path], typer.Argument(metavar="REPORT.json", help="JSON reports to combine.")
    ],
    output_format: Annotated[
        str, typer.Option("--format", "-f", help="Output format: json, html, text, sarif...")
    ] = "json",
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the report to FILE.", dir_okay=False),
    ] = None,
) -> None:
    """Combine JSON reports (say, one per hypervisor) into one report or one HTML page.

    Hosts are concatenated and every count recomputed; a URI found in several reports (each
    hypervisor's qemu:///system) is told apart by the host name: qemu:///system#hv1.
    """
    from auditor.reports import FORMATS
    from auditor.reports.merge import MergeError, merge_results

    if output_format not in FORMATS:
        exits.error(f"unknown format {output_format!r} (known: {', '.join(FORMATS)})")
        raise typer.Exit(exits.USAGE)
    results = _load_reports(reports)
    try:
        merged = merge_results(list(zip(reports, results, strict=True)))
    except MergeError as exc:
        exits.error(str(exc))
        raise typer.Exit(exits.USAGE) from None
    if output_format == "sarif":  # SARIF describes each rule; a JSON report holds no docs
        from auditor.engine.audit import with_rule_docs
        from auditor.engine.registry import load_rules

        merged = with_rule_docs(merged, load_rules()[0])
    _emit(output_format, output, merged)


def _emit(name: str, path: Path | None, result) -> None:
    """Render RESULT as NAME to PATH (atomically), or to stdout; colour only for text on a
    terminal."""
    from auditor.reports import render

    color = path is None and name == "text" and sys.stdout.isatty()
    report = render(name, result, color=color and "NO_COLOR" not in os.environ)
    if path is None:
        sys.stdout.write(report)
    else:
        write_atomically(path, report)


def _fails(findings, fail_on: str) -> bool:
    """Whether the gate fails: a finding at or above FAIL_ON that is neither waived nor
    baselined."""
    if fail_on == "never":
        return False
    threshold = Severity(fail_on).rank
    return any(f.severity.rank >= threshold and not f.suppressed for f in findings)


def _load_reports(paths: list[Path]) -> list:
    from auditor.reports.loader import ReportError, load_report

    try:
        return [load_report(path) for path in paths]
    except ReportError as exc:
        exits.error(str(exc))
        raise typer.Exit(exits.USAGE) from None


def main() -> None:
    # libvirt's client library logs its warnings and errors straight to stderr; snapaudit
    # reports every error itself, as one line. Read when libvirt is first imported.
    os.environ.setdefault("LIBVIRT_LOG_OUTPUTS", "4:file:/dev/null")
    from auditor.stopping import run_main

    run_main(app)
