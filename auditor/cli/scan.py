"""`snapaudit scan`: parses the options, runs the pipeline, writes every report, and turns
the result into the exit code."""

from __future__ import annotations

import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import typer

from auditor.cli import exits
from auditor.cli.gate import FailOn, exit_code
from auditor.cli.output import emit
from auditor.cli.problems import problem_lines


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
    from auditor.pipeline import run
    from auditor.policy.config import ConfigError
    from auditor.policy.waivers import BaselineError
    from auditor.policy.waivers import write_baseline as save_baseline

    outputs = _outputs(formats, output)
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
            )
    except (ConfigError, BaselineError) as exc:
        exits.fail(exits.USAGE, str(exc))
    if write_baseline:
        save_baseline(result, write_baseline)

    for name, path in outputs:
        emit(name, path, result)
    # Problems go to stderr too, unless a text report on stdout already shows them.
    if any(path is not None or name != "text" for name, path in outputs):
        for line in problem_lines(result, [path for _, path in outputs]):
            exits.error(line)
    raise typer.Exit(exit_code(result, result.findings, config.fail_on.value))


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


def _progress():
    """A progress bar on stderr, only when stderr is a terminal."""
    if not sys.stderr.isatty():
        return nullcontext()
    from auditor.cli.progress import HostProgress

    return HostProgress()
