"""The `snapaudit` command: the typer app, --version, and the commands, each in the module
named for what it does."""

from __future__ import annotations

import gc
import os
from typing import Annotated

import typer

from auditor import __version__
from auditor.cli import exits, parsing
from auditor.cli.collect import collect
from auditor.cli.fix import fix
from auditor.cli.reportcmds import diff_reports, merge_reports
from auditor.cli.rulecmds import explain, list_rules, show_config
from auditor.cli.scan import scan

app = typer.Typer(
    cls=parsing.Group,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Audit libvirt VM snapshots against RHEL 10's support rules.",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"snapaudit {__version__}")
        raise typer.Exit(exits.OK)


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    pass


# In this order in `snapaudit --help`.
app.command("scan", cls=parsing.Command)(scan)
app.command("rules", cls=parsing.Command)(list_rules)
app.command("config", cls=parsing.Command)(show_config)
app.command("explain", cls=parsing.Command)(explain)
app.command("fix", cls=parsing.Command)(fix)
app.command("diff", cls=parsing.Command)(diff_reports)
app.command("merge", cls=parsing.Command)(merge_reports)
app.command("collect", cls=parsing.Command)(collect)


def main() -> None:
    # A scan keeps hundreds of thousands of small objects to its end and makes next to no
    # reference cycles, so the collector's default thresholds have it walk them over and over
    # (a tenth of the CPU of a 10,000-snapshot scan). Leave what the imports made out of the
    # collections, and collect young objects less often.
    gc.freeze()
    gc.set_threshold(50_000, 20, 10)
    # libvirt's client library logs its warnings and errors straight to stderr; snapaudit
    # reports every error itself, as one line. Read when libvirt is first imported.
    os.environ.setdefault("LIBVIRT_LOG_OUTPUTS", "4:file:/dev/null")
    from auditor.stopping import run_main

    run_main(lambda: parsing.run(app))
