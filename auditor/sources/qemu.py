"""Running QEMU's command-line tools (qemu-img, qemu-nbd) and reading their JSON.

Shared by the file checks of an audit and by fix mode: one place that turns a tool's failure
into the one line it printed last.
"""

from __future__ import annotations

import json
import subprocess


class QemuToolError(RuntimeError):
    """A tool failed; the message is its own last line of error output."""


def run(*args: str, timeout: float | None = None) -> str:
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise QemuToolError(f"{args[0]} failed: {exc}") from None
    if proc.returncode:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        raise QemuToolError(lines[-1].removeprefix(f"{args[0]}: ") if lines else "failed")
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
