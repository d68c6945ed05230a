"""Command line: wires sources, rules and reporters together; holds no audit logic."""

from __future__ import annotations

import enum
import os
import sys
import tempfile
from contextlib import nullcontext
from datetime import UTC, datetime
from importlib.resources import as_file, files
from pathlib import Path
from typing import Annotated

import typer

from auditor import __version__
from auditor.model import Severity

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Audit libvirt VM snapshots against RHEL 10's support rules.",
)

# Exit codes are part of the contract with CI gates.
EXIT_OK, EXIT_FINDINGS, EXIT_USAGE, EXIT_INCOMPLETE = 0, 1, 2, 3


class Format(enum.StrEnum):
    text = "text"
    json = "json"
    html = "html"


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
    return as_file(files("auditor") / "demo" / "demo-host.xml")


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
    output_format: Annotated[Format, typer.Option("--format", "-f", help="Report format.")] = (
        Format.text
    ),
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the report to FILE.", dir_okay=False),
    ] = None,
    fail_on: Annotated[
        FailOn, typer.Option("--fail-on", help="Lowest severity that makes the exit code 1.")
    ] = FailOn.error,
    check_files: Annotated[
        bool | None,
        typer.Option(
            "--check-files/--no-check-files",
            help="Inspect the image and memory files that snapshots name (qemu-img info, "
            "read-only). Default: only for local connections.",
        ),
    ] = None,
) -> None:
    """Audit every snapshot of every domain on one or more hosts (read-only)."""
    from auditor.engine import audit
    from auditor.registry import load_rules
    from auditor.reporters import render
    from auditor.scanner import scan_hosts
    from auditor.summary import summarize

    with demo_node_file() if demo else nullcontext() as demo_path:
        uris: list[str | None] = list(connect or [])
        if demo:
            uris.append(f"test://{demo_path}")
        if not uris:
            uris = [None]
        rules, load_errors = load_rules()
        scans = [None] * len(uris)
        with _progress() as progress:
            for index, host_scan in scan_hosts(uris, progress, check_files):
                scans[index] = host_scan
        result = audit(scans, rules, load_errors, now=_report_time())

    to_terminal = output is None and sys.stdout.isatty()
    color = to_terminal and output_format is Format.text and "NO_COLOR" not in os.environ
    report = render(output_format.value, result, color=color)
    if output is None:
        sys.stdout.write(report)
    else:
        _write_atomically(output, report)
    if output is not None or output_format is not Format.text:
        for host_scan in result.hosts:
            if host_scan.host.error:
                _err(f"cannot scan {host_scan.host.uri}: {host_scan.host.error}")

    summary = summarize(result)
    if not summary.complete:
        raise typer.Exit(EXIT_INCOMPLETE)
    if fail_on is not FailOn.never:
        threshold = Severity(fail_on.value).rank
        if any(f.severity.rank >= threshold for f in result.findings):
            raise typer.Exit(EXIT_FINDINGS)
    raise typer.Exit(EXIT_OK)


@app.command("rules")
def list_rules() -> None:
    """List the available rules: code, name, severity and summary."""
    from auditor.registry import load_rules

    rules, errors = load_rules()
    rows = [(r.code, r.name, r.severity.value, r.summary) for r in rules]
    widths = [max(len(row[i]) for row in rows) for i in range(3)] if rows else [0, 0, 0]
    for row in rows:
        typer.echo(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[3]
        )
    for error in errors:
        _err(f"rule {error.rule} not loaded: {error.message}")


@app.command()
def explain(rule: Annotated[str, typer.Argument(help="Rule code or name, e.g. SNAP002.")]) -> None:
    """Explain a rule: what it checks, why, noncompliant and compliant XML, how to fix it."""
    from auditor.registry import load_rules
    from auditor.rule import DOC_SECTIONS

    rules, _ = load_rules()
    wanted = rule.strip()
    match = next((r for r in rules if wanted.upper() == r.code or wanted.lower() == r.name), None)
    if match is None:
        _err(f"unknown rule {wanted!r}; `snapaudit rules` lists them")
        raise typer.Exit(EXIT_USAGE)
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
    from auditor.progress import HostProgress

    return HostProgress()


def _report_time() -> datetime:
    # SOURCE_DATE_EPOCH pins the report's timestamp, for reproducible reports and exact tests.
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.isdigit():
        return datetime.fromtimestamp(int(epoch), tz=UTC)
    return datetime.now(UTC)


def _write_atomically(path: Path, text: str) -> None:
    # A half-written report must never be picked up by a mail job or CI artifact upload.
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _err(message: str) -> None:
    typer.echo(f"snapaudit: {message}", err=True)


def main() -> None:
    # libvirt's client library logs its warnings and errors straight to stderr; snapaudit
    # reports every error itself, as one line. Read when libvirt is first imported.
    os.environ.setdefault("LIBVIRT_LOG_OUTPUTS", "4:file:/dev/null")
    app()
