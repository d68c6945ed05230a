"""`snapaudit collect`: each host's snapshot metadata into a bundle, read-only like `scan`,
to be audited later and elsewhere with `snapaudit scan --from`."""

from __future__ import annotations

import io
import os
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
    *,
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE|DIR",
            help="The bundle to write; or an existing directory that gets one new bundle per "
            "host, named after it (HOST.snapaudit.tar.gz; never replacing a file already there).",
        ),
    ],
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
    from auditor.sources.live.fleet import collect_hosts
    from auditor.sources.offline.bundle import write_bundle

    uris: list[str | None] = [*connect] if connect else [None]
    into_dir = os.path.isdir(output) and not os.path.islink(output)
    if len(uris) > 1 and not into_dir:
        exits.fail(exits.USAGE, f"{output}: several hosts need -o DIR, an existing directory")
    if not into_dir and (problem := safefs.output_problem(output)):
        exits.fail(exits.USAGE, problem)
    if into_dir and not os.access(output, os.W_OK | os.X_OK):
        exits.fail(exits.USAGE, f"cannot write in {output}: permission denied")
    if timeout <= 0:
        exits.fail(exits.USAGE, "--timeout must be a positive number of seconds")
    code = exits.OK
    names: set[str] = set()
    for _, scan, raw in sorted(collect_hosts(uris, check_files, timeout), key=lambda r: r[0]):
        if raw is None:
            exits.error(f"cannot collect {scan.host.uri}: {scan.host.error}")
            code = exits.INCOMPLETE
            continue
        data = io.BytesIO()
        write_bundle(data, raw, scan.files)
        if into_dir:
            path, problem = _create_in(output, raw.host.hostname or raw.host.uri, data, names)
        else:
            path = output
            problem = safefs.attempt(safefs.write_file, path, data.getvalue())
        if problem:
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


def _create_in(directory: Path, host: str, data: io.BytesIO, taken: set[str]):
    """(path, problem): a new file in DIRECTORY named after HOST, safe characters only. An
    existing entry (another host's bundle, an earlier run's, or anything planted there) is
    never replaced or followed: the next free name is taken."""
    from auditor import safefs

    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", host).strip("._-") or "host"
    mask = os.umask(0o022)  # the only way to read the umask is to set it
    os.umask(mask)
    for n in range(1, 1000):
        name = f"{stem}.snapaudit.tar.gz" if n == 1 else f"{stem}-{n}.snapaudit.tar.gz"
        if name in taken:
            continue
        path = directory / name
        try:
            safefs.create_file(str(path), data.getvalue(), 0o666 & ~mask)
        except FileExistsError:
            continue
        except OSError as exc:
            return path, f"cannot write {path}: {exc.strerror or exc}"
        taken.add(name)
        return path, None
    return directory / stem, f"cannot write in {directory}: every name for {host} is taken"
