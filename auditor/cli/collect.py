"""`snapaudit collect`: each host's snapshot metadata into a bundle, read-only like `scan`,
to be audited later and elsewhere with `snapaudit scan --from`."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Annotated

import typer

from auditor.cli import exits
from auditor.display import clean


def collect(
    connect: Annotated[
        list[str] | None,
        typer.Option(
            "--connect",
            "-c",
            metavar="URI",
            help="libvirt URI to collect from (repeatable). Default: libvirt's default URI.",
        ),
    ] = None,
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE|DIR",
            help="The bundle to write; with several hosts, an existing directory that gets "
            "one bundle per host, named after it.",
        ),
    ] = ...,
    check_files: Annotated[
        bool | None,
        typer.Option(
            "--check-files/--no-check-files",
            help="Record facts about the image and memory files snapshots name, for the file "
            "rules. Default: only for local connections.",
        ),
    ] = None,
    timeout: Annotated[
        float,
        typer.Option(metavar="SECONDS", help="Give up on a host that takes longer."),
    ] = 300,
) -> None:
    """Save each host's snapshot metadata, domain definitions and file facts to a bundle
    (read-only; no secrets), to audit later with `snapaudit scan --from BUNDLE`.

    Exit 0 when every host was collected whole; 2 on a usage or output error; 3 when a host
    (or something on it) could not be read: the other hosts' bundles are still written."""
    from auditor import safefs
    from auditor.sources.bundle import write_bundle
    from auditor.sources.fleet import collect_hosts

    uris = list(connect or [None])
    into_dir = output.is_dir() and not output.is_symlink()
    if len(uris) > 1 and not into_dir:
        exits.fail(exits.USAGE, f"{output}: several hosts need -o DIR, an existing directory")
    if not into_dir and (problem := safefs.output_problem(output)):
        exits.fail(exits.USAGE, problem)
    if timeout <= 0:
        exits.fail(exits.USAGE, "--timeout must be a positive number of seconds")
    code = exits.OK
    names: set[str] = set()
    for _, scan, raw in sorted(collect_hosts(uris, check_files, timeout), key=lambda r: r[0]):
        if raw is None:
            exits.error(f"cannot collect {scan.host.uri}: {scan.host.error}")
            code = exits.INCOMPLETE
            continue
        path = (
            output / _bundle_name(raw.host.hostname or raw.host.uri, names) if into_dir else output
        )
        data = io.BytesIO()
        write_bundle(data, raw, scan.files)
        if problem := safefs.attempt(safefs.write_file, path, data.getvalue()):
            exits.error(problem)
            code = exits.USAGE
            continue
        missed = [s for s in scan.skipped if not s.vanished]
        snapshots = sum(len(d.snapshots) for d in scan.domains)
        counts = f"{len(scan.domains)} domains, {snapshots} snapshots"
        typer.echo(clean(f"{path}: {scan.host.uri}, {counts}"))
        for item in missed:
            where = "/".join(x for x in (item.domain, item.snapshot) if x)
            exits.error(f"{scan.host.uri}: {where}: not collected: {item.reason}")
        if missed and code == exits.OK:
            code = exits.INCOMPLETE
    raise typer.Exit(code)


def _bundle_name(host: str, taken: set[str]) -> str:
    """A file name made from the host's name: safe characters only, never reused."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", host).strip("._") or "host"
    name, n = f"{stem}.snapaudit.tar.gz", 1
    while name in taken:
        n += 1
        name = f"{stem}-{n}.snapaudit.tar.gz"
    taken.add(name)
    return name
