"""Running QEMU's command-line tools (qemu-img, qemu-nbd) and reading their JSON.

Shared by the file checks of an audit and by fix mode: one place that starts a tool so that
it dies with us (`die_with_parent`, SIGKILL of snapaudit included: no `qemu-img` goes on
reading or writing once we are gone), and that turns a tool's failure into one line: the
signal that killed it, or the last line it printed.
"""

from __future__ import annotations

import json
import signal
import subprocess

from auditor.stopping import die_with_parent


class QemuToolError(RuntimeError):
    """A tool failed; the message is its own last line of error output, or its signal."""


def child(args: tuple[str, ...] | list[str], timeout: float | None = None):
    """Run ARGS to the end; its output is captured as text. Raises OSError or TimeoutExpired.
    In a process group of its own, so a terminal's Ctrl-C reaches only snapaudit, which stops
    between two steps, never inside one."""
    return subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=die_with_parent(),
        process_group=0,
    )


def failure(proc: subprocess.CompletedProcess) -> str:
    """Why a tool failed: the signal that killed it, or its own last line of errors."""
    if proc.returncode < 0:
        return f"killed by {signal.Signals(-proc.returncode).name}"
    lines = (proc.stderr or proc.stdout).strip().splitlines()
    tool = proc.args[0]
    return lines[-1].removeprefix(f"{tool}: ") if lines else f"failed (exit {proc.returncode})"


def run(*args: str, timeout: float | None = None) -> str:
    try:
        proc = child(args, timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise QemuToolError(f"{args[0]} failed: {exc}") from None
    if proc.returncode:
        raise QemuToolError(failure(proc))
    return proc.stdout


def img_info(
    path: str,
    *,
    fmt: str | None = None,
    force_share: bool = False,
    chain: bool = False,
    timeout: float | None = None,
):
    """`qemu-img info --output=json` of PATH: a dict, or with CHAIN a list (top first).
    FORCE_SHARE (-U) reads an image that a running VM holds."""
    args = ["qemu-img", "info", "--output=json"]
    args += ["-U"] * force_share + ["--backing-chain"] * chain + (["-f", fmt] if fmt else [])
    return json.loads(run(*args, path, timeout=timeout))
