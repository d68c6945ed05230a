"""Writes the man page snapaudit(1) and the bash and zsh completion scripts into packaging/.

Everything comes from the program itself: commands, options and their help from the typer
app (through click's command objects, so however the CLI is split into modules), rules from
the rule modules in rules/ (their @rule metadata and docstrings: entry points do not exist
before the package is installed), exit codes from auditor.cli.exits, the environment
variables options read and the files the program looks for from where it defines them; only
the examples and the variables no option reads are written here. The files are committed;
tests/packaging/test_packaging.py fails when they differ from what this script writes.

    python scripts/generate_packaging.py          # rewrite the files
    python scripts/generate_packaging.py --check  # exit 1, naming the stale files
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import re
import sys
from pathlib import Path

import typer
from typer.completion import get_completion_script

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from auditor import __version__  # noqa: E402
from auditor.cli import exits  # noqa: E402
from auditor.cli.app import app  # noqa: E402
from auditor.cli.fix import DEFAULT_STATE_DIR  # noqa: E402
from auditor.fix.domain_lock import LOCK_DIR  # noqa: E402
from auditor.policy.config import SEARCH_PATH  # noqa: E402
from auditor.rule import Rule  # noqa: E402

PROG = "snapaudit"
COMPLETE_VAR = "_SNAPAUDIT_COMPLETE"
OUTPUTS = {
    "packaging/snapaudit.1": lambda: manpage(),
    "packaging/completion/snapaudit": lambda: completion("bash"),
    "packaging/completion/_snapaudit": lambda: completion("zsh"),
}


def roff(text: str) -> str:
    """Plain text as roff: escapes, `code` in bold, no line that roff would take as a request."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    text = re.sub(r"`([^`]+)`", r"\\fB\1\\fR", text)
    return "\n".join(
        "\\&" + line if line.startswith((".", "'")) else line for line in text.split("\n")
    )


def paragraphs(text: str) -> list[str]:
    """Blank-line separated paragraphs, each joined into one line for roff to fill."""
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]


def help_blocks(text: str) -> list[list[str]]:
    """A command's help as roff, block by block: a paragraph filled, and a block that --help
    shows as written (click's \\b line first) line by line."""
    blocks = []
    for block in re.split(r"\n\s*\n", inspect.cleandoc(text)):
        lines = block.split("\n")
        if lines[0].strip() == "\b":
            blocks.append([".nf", *(roff(line) for line in lines[1:]), ".fi"])
        elif block.strip():
            blocks.append([roff(" ".join(block.split()))])
    return blocks


def metavar(text: str) -> str:
    """click's `<path>`, `<list[str]>` and `<a|b>` placeholders as man pages write them."""

    def placeholder(match: re.Match) -> str:
        inner = match.group(1)
        if "|" in inner:
            return "{" + inner + "}"
        inner = re.sub(r"^list\[(.*)\]$", r"\1", inner, flags=re.IGNORECASE)
        return {"str": "TEXT", "bool": ""}.get(inner, inner.upper())

    return re.sub(r"<([^<>]+)>", placeholder, text).strip()


def option_items(command, ctx, *, with_help: bool = False) -> list[str]:
    """A .TP item per parameter, as `--help` shows it: names in bold, placeholders in italic."""
    out = []
    for param in command.get_params(ctx) if with_help else command.params:
        record = None if getattr(param, "hidden", False) else param.get_help_record(ctx)
        if record is None:
            continue
        names, help_text = record
        if param.opts[0].startswith("-"):
            words = []
            for token in metavar(names).split(" "):
                core = token.rstrip(",")
                font = "B" if core.startswith("-") else "I"
                words.append(core if core == "/" else f"\\f{font}{roff(core)}\\fR")
                words[-1] += token[len(core) :]
            head = " ".join(words)
        else:  # an argument: its placeholder alone
            head = f"\\fI{roff(param.metavar or param.name.upper())}\\fR"
        out += [".TP", head, roff(" ".join(help_text.split()))]
    return out


def manpage() -> str:
    root = typer.main.get_command(app)
    ctx = root.make_context(PROG, [], resilient_parsing=True)
    summary = paragraphs(root.help or "")[0].rstrip(".")
    out = [
        f'.TH SNAPAUDIT 1 "" "{PROG} {__version__}" "User Commands"',
        ".SH NAME",
        f"{PROG} \\- {roff(summary[0].lower() + summary[1:])}",
        ".SH SYNOPSIS",
        f".B {PROG}",
        "[\\fIOPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]...",
    ]
    commands = list(root.commands.items())
    for name, command in commands:
        sub = command.make_context(name, [], parent=ctx, resilient_parsing=True)
        pieces = " ".join(command.collect_usage_pieces(sub)).replace("{", "").replace("}", "")
        out += [".br", f".B {PROG} {name}", roff(pieces)]
    out += [".SH DESCRIPTION"]
    for paragraph in paragraphs(root.help or ""):
        out += [roff(paragraph), ".PP"]
    out[-1:] = [".SH OPTIONS", *option_items(root, ctx, with_help=True)]
    out += [".SH COMMANDS"]
    for name, command in commands:
        sub = command.make_context(name, [], parent=ctx, resilient_parsing=True)
        out += [f".SS {name}"]
        for i, block in enumerate(help_blocks(command.help or "")):
            out += [".PP"] * bool(i) + block
        out += option_items(command, sub)
    out += rules_section() + exit_section() + environment_section(root, ctx) + files_section()
    out += examples_section()
    out += [
        ".SH SEE ALSO",
        "\\fBsnapaudit explain\\fR \\fICODE\\fR for a rule's full documentation;",
        ".BR virsh (1),",
        ".BR qemu\\-img (1)",
    ]
    return "\n".join(out) + "\n"


def load_rules(directory: Path = REPO / "rules") -> list[Rule]:
    """Every Rule defined by a module of the rules/ directory, in code order."""
    found = []
    for path in sorted(directory.glob("*.py")):
        spec = importlib.util.spec_from_file_location(f"_manpage_rules.{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        found += [v for v in vars(module).values() if isinstance(v, Rule)]
    return sorted(found, key=lambda r: (not r.code.startswith("HOST"), r.code))


def rules_section() -> list[str]:
    out = [
        ".SH RULES",
        "Each rule's code, name and default severity; \\fBsnapaudit explain\\fR shows why,",
        "noncompliant and compliant XML, remediation and references.",
    ]
    for r in load_rules():
        out += [".TP", f"\\fB{r.code}\\fR {roff(r.name)} ({r.severity.value})"]
        out.append(roff(r.summary))
        checks = r.sections.get("What it checks", "")
        if checks:
            out += [".IP", *[roff(p) for p in paragraphs(checks)]]
        details = []
        if r.params:
            details.append(
                "Parameters: "
                + ", ".join(f"{k} (default {json.dumps(v)})" for k, v in r.params.items())
                + "."
            )
        if not r.enabled:
            details.append("Off by default: select it to use it.")
        if r.tags:
            details.append("Tags: " + ", ".join(r.tags) + ".")
        if details:
            out += [".IP", roff(" ".join(details))]
    return out


def exit_codes() -> dict[int, list[str]]:
    """Exit codes from auditor.cli.exits: each constant and its comment, grouped by value."""
    codes: dict[int, list[str]] = {}
    pattern = re.compile(r"^([A-Z_]+) = (\d+)(?:\s*#\s*(.*))?$")
    for line in inspect.getsource(exits).splitlines():
        match = pattern.match(line)
        if match:
            name, value, comment = match.groups()
            codes.setdefault(int(value), []).append(comment or name)
    return dict(sorted(codes.items()))


def exit_section() -> list[str]:
    out = [".SH EXIT STATUS"]
    for code, meanings in exit_codes().items():
        out += [".TP", f".B {code}", roff(";\n".join(meanings) + ".")]
    return out


# What the program reads from the environment besides the options' variables.
ENVIRONMENT = {
    "LIBVIRT_DEFAULT_URI": "The host `scan`, `collect` and `fix` connect to without `-c` "
    "(libvirt's own default otherwise).",
    "SOURCE_DATE_EPOCH": "Seconds since 1970: the date reports give, for reproducible builds. "
    "Snapshot ages are still measured against the real clock (`--as-of` moves both).",
    "NO_COLOR": "Set: no colour in the text report, even on a terminal.",
}


def environment_section(root, ctx) -> list[str]:
    """Each variable an option reads (by the first command that has it; its help says what
    it is), then ENVIRONMENT."""
    items = {}
    for name, command in root.commands.items():
        for param in command.params:
            if isinstance(param.envvar, str) and param.envvar not in items:
                option = max(param.opts, key=len)
                text = " ".join((param.help or "").split())
                items[param.envvar] = f"`snapaudit {name} {option}` when it is not given: {text}"
    items.update(ENVIRONMENT)
    out = [".SH ENVIRONMENT"]
    for variable, text in items.items():
        out += [".TP", f".B {variable}", roff(text)]
    return out


def files_section() -> list[str]:
    local, system = SEARCH_PATH
    return [
        ".SH FILES",
        ".TP",
        f".I ./{local}",
        "The configuration, in the working directory: rules, severities, parameters, waivers.",
        ".TP",
        f".I {system}",
        f"The configuration when there is no ./{local} (\\fB\\-\\-config\\fR names another).",
        ".TP",
        f".I {DEFAULT_STATE_DIR}",
        "Fix mode's journals (\\fB\\-\\-state\\-dir\\fR names another).",
        ".TP",
        f".I {LOCK_DIR}",
        "Fix mode's locks, one per domain being converted.",
    ]


# (what it does, the commands): each shown as typed.
EXAMPLES = [
    (
        "Audit the built-in demo host and write an HTML report:",
        ["snapaudit scan --demo -o report.html --fail-on never"],
    ),
    (
        "A CI gate: fail on error findings, and hand them to the CI's viewers:",
        [
            "snapaudit scan -c qemu:///system --fail-on error \\",
            "    -f text -f sarif:snapaudit.sarif -f junit:snapaudit.xml",
        ],
    ),
    (
        "Adopt the gate on a host with known debt: record the findings once, then fail only on "
        "new ones:",
        [
            "snapaudit scan -c qemu:///system --write-baseline baseline.json",
            "snapaudit scan -c qemu:///system --baseline baseline.json",
        ],
    ),
    ("What changed since yesterday's report:", ["snapaudit diff yesterday.json report.json"]),
    (
        "Audit a host elsewhere, without its daemon, from a bundle collected on it:",
        [
            "snapaudit collect -c qemu:///system -o hv1.snapaudit.tar.gz",
            "snapaudit scan --from hv1.snapaudit.tar.gz -o hv1.html",
        ],
    ),
    (
        "Convert a host's internal snapshots to external ones: read the plan, then apply it:",
        ["snapaudit fix -c qemu:///system", "snapaudit fix -c qemu:///system --apply"],
    ),
]


def examples_section() -> list[str]:
    out = [".SH EXAMPLES"]
    for text, commands in EXAMPLES:
        out += [".PP", roff(text), ".PP", ".RS", ".nf", *(roff(c) for c in commands), ".fi", ".RE"]
    return out


def completion(shell: str) -> str:
    return get_completion_script(prog_name=PROG, complete_var=COMPLETE_VAR, shell=shell) + "\n"


def main(argv: list[str]) -> int:
    check = argv == ["--check"]
    stale = []
    for relative, make in OUTPUTS.items():
        path = REPO / relative
        text = make()
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(relative)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    for relative in stale:
        print(f"{relative} is out of date: run python scripts/generate_packaging.py")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
