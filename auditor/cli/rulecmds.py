"""`snapaudit rules`, `explain` and `config`: what the rules are and how they are set."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from auditor.cli import clock, exits
from auditor.errors import UsageError


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


def show_config(
    show: Annotated[bool, typer.Option("--show", help="Print the effective configuration.")] = (
        False
    ),
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config", metavar="FILE", help="Configuration file (default: as `scan` finds it)."
        ),
    ] = None,
    as_of: Annotated[
        str | None,
        clock.option(
            "Judge waivers' expiry as if it were TIME (ISO 8601, or @SECONDS since 1970), as "
            "`scan --as-of` does."
        ),
    ] = None,
) -> None:
    """Check the configuration; with --show, print every effective value and its origin.

    Exit 0 when it is valid; 1 when it is valid but a waiver in it has expired (a line on
    stderr names each: it waives nothing any more); 2 when it is not valid."""
    from auditor.cli.problems import waiver_line
    from auditor.engine.registry import load_rules
    from auditor.pipeline import report_time
    from auditor.policy.config import find_config, load_config
    from auditor.reports import configtext

    rules, _ = load_rules()
    try:
        found, notes = find_config(config_file)
        config = load_config(found, rules)
    except UsageError as exc:
        exits.fail(exits.USAGE, str(exc))
    for note in notes:
        exits.error(note)
    today = report_time(clock.moment(as_of) if as_of is not None else None).date()
    expired = [w for w in config.waivers if w.expires < today]  # as a scan judges them
    for waiver in expired:
        exits.error(waiver_line("expired", waiver))
    if show:
        typer.echo(configtext.render(config, rules), nl=False)
    else:
        typer.echo(f"configuration OK: {', '.join(config.sources) or 'defaults only'}")
    raise typer.Exit(exits.EXPIRED if expired else exits.OK)


def explain(
    rule: Annotated[str, typer.Argument(metavar="RULE", help="Rule code or name, e.g. SNAP002.")],
) -> None:
    """Explain a rule: what it checks, why, noncompliant and compliant XML, how to fix it."""
    from auditor.engine.registry import RuleIndex, load_rules
    from auditor.rule import DOC_SECTIONS

    rules, _ = load_rules()
    wanted = rule.strip()
    match = RuleIndex(rules).find(wanted)
    if match is None:
        exits.fail(exits.USAGE, f"unknown rule {wanted!r}; `snapaudit rules` lists them")
    typer.echo(f"{match.code} {match.name} ({match.severity.value})")
    typer.echo(match.summary)
    if match.tags:
        typer.echo(f"Tags: {', '.join(match.tags)}")
    for section in DOC_SECTIONS:
        typer.echo(f"\n{section}:")
        for line in match.sections.get(section, "").splitlines():
            typer.echo(f"  {line}".rstrip())
