"""`snapaudit diff` and `snapaudit merge`: commands over JSON reports already written."""

from __future__ import annotations

import enum
import sys
from pathlib import Path
from typing import Annotated

import typer

from auditor import safefs
from auditor.cli import exits
from auditor.cli.gate import exit_code
from auditor.cli.output import emit, format_for
from auditor.cli.parsing import one_of
from auditor.errors import UsageError
from auditor.policy.config import FailOn


class DiffFormat(enum.StrEnum):
    text = "text"
    json = "json"


def diff_reports(
    old: Annotated[Path, typer.Argument(metavar="OLD.json", help="The earlier JSON report.")],
    new: Annotated[Path, typer.Argument(metavar="NEW.json", help="The later JSON report.")],
    output_format: Annotated[
        DiffFormat,
        typer.Option("--format", "-f", metavar=one_of(DiffFormat), help="Output format."),
    ] = DiffFormat.text,
    fail_on: Annotated[
        FailOn,
        typer.Option(
            "--fail-on",
            metavar=one_of(FailOn),
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

    old_result, new_result = _load_reports([old, new])
    diff = compare(old_result, new_result)
    sys.stdout.write(render_json(diff) if output_format is DiffFormat.json else render_text(diff))
    raise typer.Exit(exit_code(new_result, (e.finding for e in diff.added), fail_on.value))


def merge_reports(
    reports: Annotated[
        list[Path], typer.Argument(metavar="REPORT.json", help="JSON reports to combine.")
    ],
    output_format: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            metavar="FORMAT",
            help="Output format: text, json, html, sarif, junit or prometheus. Default: json.",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help="Write the report to FILE, in the format its extension names (.json, .html, "
            ".txt, .sarif, .xml for JUnit, .prom) unless --format says.",
        ),
    ] = None,
) -> None:
    """Combine JSON reports (say, one per hypervisor) into one report or one HTML page.

    Hosts are concatenated and every count recomputed; a URI found in several reports (each
    hypervisor's qemu:///system) is told apart by the host name: qemu:///system#hv1.
    """
    from auditor.reports import FORMATS
    from auditor.reports.merge import merge_results

    if output_format is not None and output_format not in FORMATS:
        exits.fail(exits.USAGE, f"--format {output_format!r}: not one of {', '.join(FORMATS)}")
    if output is not None:
        output_format = format_for(output, output_format, "json")
    output_format = output_format or "json"
    if problem := safefs.output_problem(output):
        exits.fail(exits.USAGE, problem)
    results = _load_reports(reports)
    try:
        merged = merge_results(list(zip(reports, results, strict=True)))
    except UsageError as exc:
        exits.fail(exits.USAGE, str(exc))
    if output_format == "sarif":  # SARIF describes each rule; a JSON report holds no docs
        from auditor.engine.audit import with_rule_docs
        from auditor.engine.registry import load_rules

        merged = with_rule_docs(merged, load_rules()[0])
    if problem := safefs.attempt(emit, output_format, output, merged):
        exits.fail(exits.USAGE, problem)


def _load_reports(paths: list[Path]) -> list:
    from auditor.reports.loader import load_report

    try:
        return [load_report(path) for path in paths]
    except UsageError as exc:
        exits.fail(exits.USAGE, str(exc))
