"""`snapaudit scan`: parses the options, runs the pipeline, writes every report, and turns
the result into the exit code."""

from __future__ import annotations

import os
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import typer

from auditor import safefs
from auditor.cli import clock, exits
from auditor.cli.gate import exit_code
from auditor.cli.output import emit, format_for
from auditor.cli.parsing import one_of
from auditor.cli.problems import problem_lines
from auditor.errors import UsageError
from auditor.policy.config import FailOn


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
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help="Write the report to FILE, in the format its extension names (.txt, .json, "
            ".html, .sarif, .xml for JUnit, .prom) unless --format says.",
        ),
    ] = None,
    fail_on: Annotated[
        FailOn | None,
        typer.Option(
            "--fail-on",
            metavar=one_of(FailOn),
            help="Lowest severity that makes the exit code 1. Default: error.",
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
            metavar="FILE",
            help="Configuration file. Default: ./snapaudit.toml, else /etc/snapaudit/config.toml.",
        ),
    ] = None,
    select: Annotated[
        list[str] | None,
        typer.Option(
            metavar="RULES",
            help="Rules to run, by code, name or tag (comma-separated, repeatable).",
        ),
    ] = None,
    ignore: Annotated[
        list[str] | None,
        typer.Option(
            metavar="RULES",
            help="Rules not to run, by code, name or tag (comma-separated, repeatable).",
        ),
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE", help="Fail only on findings that are not in this baseline file."
        ),
    ] = None,
    write_baseline: Annotated[
        Path | None,
        typer.Option(
            "--write-baseline",
            metavar="FILE",
            help="Record the current findings as a baseline. They do not fail the run then "
            "(exit 0) unless --fail-on is given.",
        ),
    ] = None,
    sources: Annotated[
        list[Path] | None,
        typer.Option(
            "--from",
            metavar="PATH",
            help="Audit a bundle written by `snapaudit collect`, or a directory laid out like "
            "libvirt's snapshot metadata (DOMAIN/SNAPSHOT.xml), without a daemon (repeatable).",
        ),
    ] = None,
    domain_xml: Annotated[
        Path | None,
        typer.Option(
            "--domain-xml",
            metavar="DIR",
            file_okay=False,
            help="With --from DIR: the domain definitions, as DOMAIN.xml (/etc/libvirt/qemu).",
        ),
    ] = None,
    host_name: Annotated[
        str | None,
        typer.Option(
            "--host-name",
            metavar="NAME",
            help="With one --from DIR: the host's name in reports (default: the path).",
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            metavar="SECONDS",
            help="Give up on a host that takes longer, connect included. Default: 300.",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=256,
            metavar="N",
            help="libvirt calls in flight per host. Default: 64 for remote hosts, 4 for local.",
        ),
    ] = None,
    as_of: Annotated[
        str | None,
        clock.option(
            "Audit as if it were TIME (ISO 8601, or @SECONDS since 1970): snapshot ages and the"
            " report's date. For reproducible reports."
        ),
    ] = None,
) -> None:
    """Audit every snapshot of every domain on one or more hosts (read-only).

    \b
    Exit status:
      0    no finding at or above --fail-on, waived and baselined ones aside
      1    a finding at or above --fail-on (with --write-baseline, only if
           --fail-on is given)
      2    a usage, configuration or output error
      3    a host, snapshot or rule could not be audited (whatever the findings)
      130  stopped by Ctrl-C (SIGINT): no report is written
      143  stopped by SIGTERM: no report is written
    """
    from auditor.pipeline import run
    from auditor.policy.waivers import write_baseline as save_baseline

    outputs = _outputs(formats, output)
    moment = clock.moment(as_of) if as_of is not None else None
    if (domain_xml or host_name) and not sources:
        exits.fail(exits.USAGE, "--domain-xml and --host-name go with --from")
    if host_name and sources and len(sources) > 1:
        exits.fail(exits.USAGE, "--host-name names one --from directory; several were given")
    if domain_xml and not (os.path.isdir(domain_xml) and os.access(domain_xml, os.R_OK | os.X_OK)):
        exits.fail(exits.USAGE, f"--domain-xml {domain_xml}: not a directory that can be read")
    if problem := safefs.output_problem(*(path for _, path in outputs), write_baseline):
        exits.fail(exits.USAGE, problem)
    try:
        with _progress() as progress:
            result, config = run(
                connect or [],
                demo=demo,
                check_files=check_files,
                config_file=config_file,
                select=_split(select),
                ignore=_split(ignore),
                fail_on=fail_on and fail_on.value,
                timeout=timeout,
                baseline=baseline,
                progress=progress,
                offline=sources or [],
                domain_xml=domain_xml,
                host_name=host_name,
                workers=workers,
                as_of=moment,
            )
    except UsageError as exc:
        exits.fail(exits.USAGE, str(exc))
    for note in config.notes:
        exits.error(note)
    unwritten = [safefs.attempt(emit, name, path, result) for name, path in outputs]
    if write_baseline:  # after the reports, which a bad baseline path must not cost
        unwritten.append(safefs.attempt(save_baseline, result, write_baseline))
    # Problems go to stderr too, unless a text report on stdout already shows them.
    if any(path is not None or name != "text" for name, path in outputs):
        for line in problem_lines(result, [path for _, path in outputs]):
            exits.error(line)
    for problem in filter(None, unwritten):
        exits.error(problem)
    if any(unwritten):
        raise typer.Exit(exits.USAGE)
    # A baseline is recorded to accept the findings it holds: they fail only a gate asked for.
    gate = "never" if write_baseline and fail_on is None else config.fail_on.value
    raise typer.Exit(exit_code(result, result.findings, gate))


def _outputs(formats: list[str] | None, output: Path | None) -> list[tuple[str, Path | None]]:
    """(format, file or None for stdout) for each --format; -o names the file of a single
    format given without one, or with no --format, of the format its extension names. A
    file's extension must not name another format than the one given for it."""
    from auditor.reports import FORMATS

    outputs: list[tuple[str, Path | None]] = []
    for spec in formats or ["text"]:
        name, _, path = spec.partition(":")
        if name not in FORMATS:
            exits.fail(exits.USAGE, f"--format {name!r}: not one of {', '.join(FORMATS)}")
        if path:
            format_for(Path(path), name, name)  # refuses a file named for another format
        outputs.append((name, Path(path) if path else None))
    to_stdout = [i for i, (_, path) in enumerate(outputs) if path is None]
    if output is not None:
        if len(to_stdout) != 1:
            exits.fail(exits.USAGE, "-o needs exactly one --format without a file")
        given = outputs[to_stdout[0]][0] if formats else None
        outputs[to_stdout[0]] = (format_for(output, given, "text"), output)
    elif len(to_stdout) > 1:
        exits.fail(exits.USAGE, "--format: only one format can go to standard output")
    return outputs


def _split(values: list[str] | None) -> list[str]:
    return [v.strip() for value in values or () for v in value.split(",") if v.strip()]


def _progress():
    """A progress bar on stderr, only when stderr is a terminal."""
    if not sys.stderr.isatty():
        return nullcontext()
    from auditor.cli.progress import HostProgress

    return HostProgress()
