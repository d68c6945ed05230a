"""The command line as typer parses and shows it: what it refuses as snapaudit's one line, and
the help as it reads at 80 columns.

`run` parses and runs the app; every usage error (an unknown option or command, a bad or
missing value, an argument too many) becomes one line on stderr that names what was given
and what would do, `snapaudit: --fail-on 'warn': not one of error, warning, info, never`,
and exit code 2. `Group` and `Command` are the app's command classes: they name an argument
no command takes and a URI given without -c, and show arguments by their placeholders alone
(RULE, REPORT.json...), as options show theirs: never typer's types.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from collections.abc import Iterable, Sequence
from typing import Any, NoReturn

import typer
from typer.core import TyperCommand, TyperGroup

from auditor.cli import exits

# click's exceptions, from wherever this typer takes click (typer 0.2x carries its own copy).
_click = sys.modules[typer.BadParameter.__module__]

# A libvirt URI: a driver, maybe a transport, then :// (qemu:///system, test:///default,
# qemu+ssh://root@hv1/system).
_URI = re.compile(r"[a-z][a-z0-9+.-]*://", re.IGNORECASE)


class Group(TyperGroup):
    """The app: an unknown command is named, with the closest one."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        name = args[0] if args else ""
        unknown = name[:1] not in ("", "-") and self.get_command(ctx, name) is None
        if unknown and not ctx.resilient_parsing:
            if _URI.match(name):
                ctx.fail(f"{name}: a URI goes after -c: {ctx.command_path} scan -c {name}")
            close = difflib.get_close_matches(name, list(self.commands), n=1)
            hint = f"did you mean {close[0]}?" if close else _lists(ctx.command_path)
            ctx.fail(f"{name}: no such command; {hint}")
        return super().resolve_command(ctx, args)


class Command(TyperCommand):
    """A command: an argument left over once its options and arguments are read is named;
    a URI, where the command reads one after -c, is said to go there."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        ctx.allow_extra_args = True  # left in ctx.args, to be named here
        rest = super().parse_args(ctx, args)
        if ctx.args and not ctx.resilient_parsing:
            extra = ctx.args[0]
            if _URI.match(extra) and any("-c" in param.opts for param in self.params):
                ctx.fail(f"{extra}: a URI goes after -c: {ctx.command_path} -c {extra}")
            ctx.fail(f"{extra}: unexpected argument; {_lists(ctx.command_path, 'what it takes')}")
        return rest

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        options = [self.options_metavar] if self.options_metavar else []
        return [*options, *(_placeholder(p) for p in _arguments(self, ctx))]

    def format_options(self, ctx: Any, formatter: Any) -> None:
        arguments = [(_placeholder(p), p.help or "") for p in _arguments(self, ctx)]
        options = [
            record
            for param in self.get_params(ctx)
            if param.param_type_name == "option" and (record := param.get_help_record(ctx))
        ]
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def one_of(choices: Iterable[object]) -> str:
    """The placeholder of an option that takes one of CHOICES: [text|json]."""
    return "[" + "|".join(str(choice) for choice in choices) + "]"


def run(app: typer.Typer) -> NoReturn:
    """Parse the command line, run the command it names, and exit with its exit code."""
    args = sys.argv[1:]
    command = typer.main.get_command(app)
    try:
        code = command.main(args, prog_name="snapaudit", standalone_mode=False)
    except _click.ClickException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `snapaudit` alone: its help
            typer.echo(exc.ctx.get_help())
            sys.exit(exits.USAGE)
        exits.error(message(exc, args))
        sys.exit(exc.exit_code)
    except typer.Abort:
        exits.error("aborted")
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else exits.OK)


def message(exc: Any, args: Sequence[str]) -> str:
    """What typer refused, as one line: what was given, and what would do."""
    if isinstance(exc, _click.NoSuchOption):
        close = sorted(exc.possibilities or ())
        hint = f"did you mean {', '.join(close)}?" if close else _lists(_path(exc))
        return f"{exc.option_name}: no such option; {hint}"
    if isinstance(exc, _click.MissingParameter) and exc.param is not None and exc.ctx is not None:
        return f"{exc.ctx.info_name} needs {_name(exc.param)}"
    if isinstance(exc, _click.BadParameter) and exc.param is not None:
        choices = _choices(exc.param)
        reason = f"not one of {', '.join(choices)}" if choices else _sentence(exc.message)
        value = _given(exc.param, args)
        if value is None or (not choices and repr(value) in reason):
            return f"{_name(exc.param)}: {reason}"
        return f"{_name(exc.param)} {value!r}: {reason}"
    return _sentence(exc.format_message())


def _path(exc: Any) -> str:
    return exc.ctx.command_path if exc.ctx is not None else "snapaudit"


def _lists(command_path: str, what: str = "them") -> str:
    return f"`{command_path} --help` lists {what}"


def _name(param: Any) -> str:
    """An option by its longest name (--output), an argument by its placeholder (RULE)."""
    if param.param_type_name == "option":
        return max(param.opts, key=len)
    return param.metavar or param.name.upper()


def _arguments(command: Any, ctx: Any) -> list[Any]:
    return [p for p in command.get_params(ctx) if p.param_type_name == "argument"]


def _placeholder(argument: Any) -> str:
    return _name(argument) + ("..." if argument.nargs != 1 else "")


def _choices(param: Any) -> list[str] | None:
    """The values a choice parameter takes (typer 0.2x describes its type itself)."""
    described = getattr(param, "type_descriptor", None)
    found = getattr(described, "choices", None) or getattr(
        getattr(param, "type", None), "choices", None
    )
    return [str(getattr(choice, "value", choice)) for choice in found] if found else None


def _given(param: Any, args: Sequence[str]) -> str | None:
    """The value ARGS last give the option PARAM (--opt V, --opt=V, -oV), else its
    environment variable's; None for an argument."""
    names = [n for n in (*param.opts, *param.secondary_opts) if n.startswith("-")]
    value = None
    for i, arg in enumerate(args):
        if arg == "--":
            break
        for name in names:
            if arg == name and i + 1 < len(args):
                value = args[i + 1]
            elif arg.startswith(f"{name}=") and name.startswith("--"):
                value = arg[len(name) + 1 :]
            elif arg.startswith(name) and not name.startswith("--") and len(arg) > len(name):
                value = arg[len(name) :]
    if value is None and names and isinstance(param.envvar, str):
        value = os.environ.get(param.envvar)
    return value


def _sentence(text: str) -> str:
    """A library's message as the rest of a line: no trailing period, no capital, no
    'Value error, ' that pydantic puts before a ValueError's text."""
    text = " ".join(text.split()).removeprefix("Value error, ").rstrip(".")
    return text[:1].lower() + text[1:] if text[1:2].islower() else text
