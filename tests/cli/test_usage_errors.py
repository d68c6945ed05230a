"""What the command line refuses: one line each on stderr, in one style, naming what was given
and what would do, and exit code 2; nothing on stdout."""

from __future__ import annotations

import subprocess

import pytest

from tests.helpers import SNAPAUDIT, fixture_uri, run_cli

SEED = fixture_uri("seed_examples.xml")


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["scan", "-c", SEED, "--fail-on", "warn"],
            "--fail-on 'warn': not one of error, warning, info, never",
        ),
        (
            ["scan", "-c", SEED, "--fail-on=Warnings"],
            "--fail-on 'Warnings': not one of error, warning, info, never",
        ),
        (
            ["diff", "--fail-on", "all", "a.json", "b.json"],
            "--fail-on 'all': not one of error, warning, info, never",
        ),
        (["fix", "--format", "yaml"], "--format 'yaml': not one of text, json"),
        (["diff", "-f", "html", "a.json", "b.json"], "--format 'html': not one of text, json"),
        (
            ["merge", "-f", "pdf", "a.json"],
            "--format 'pdf': not one of text, json, html, sarif, junit, prometheus",
        ),
        (
            ["scan", "-c", SEED, "--select", "SNAP02"],
            "--select 'SNAP02': unknown rule, name or tag; did you mean SNAP002?",
        ),
        (
            ["scan", "qemu:///system"],
            "qemu:///system: a URI goes after -c: snapaudit scan -c qemu:///system",
        ),
        (
            ["collect", "-o", "b.tar.gz", "qemu+ssh://root@hv1/system"],
            "qemu+ssh://root@hv1/system: a URI goes after -c: snapaudit collect -c"
            " qemu+ssh://root@hv1/system",
        ),
        (
            ["qemu:///system"],
            "qemu:///system: a URI goes after -c: snapaudit scan -c qemu:///system",
        ),
        (
            ["scan", "-c", SEED, "extra"],
            "extra: unexpected argument; `snapaudit scan --help` lists what it takes",
        ),
        (["scan", "--fail", "never"], "--fail: no such option; did you mean --fail-on?"),
        (["scan", "--bogus"], "--bogus: no such option; `snapaudit scan --help` lists them"),
        (["scna"], "scna: no such command; did you mean scan?"),
        (["frobnicate"], "frobnicate: no such command; `snapaudit --help` lists them"),
        (["explain"], "explain needs RULE"),
        (["collect"], "collect needs --output"),
        (["scan", "-c"], "option '-c' requires an argument"),
        (["scan", "--workers", "0"], "--workers '0': input should be greater than or equal to 1"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(args, line):
    proc = run_cli(*args)
    assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", f"snapaudit: {line}\n")


def test_the_command_alone_shows_its_help():
    proc = run_cli()
    assert (proc.returncode, proc.stderr) == (2, "")
    assert (
        proc.stdout
        == subprocess.run([SNAPAUDIT, "--help"], capture_output=True, text=True, timeout=60).stdout
    )
