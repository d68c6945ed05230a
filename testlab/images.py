"""Disk images through qemu-img and qemu-io, the tools an auditor's findings are checked with."""

import json
import subprocess
import tempfile
from pathlib import Path


def _run(*args: str | Path) -> str:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(map(str, args))}: {proc.stderr or proc.stdout}")
    return proc.stdout


def create_qcow2(path: Path, size: int | str, *, backing: Path | None = None) -> Path:
    """A qcow2 image of SIZE (bytes, or qemu-img units such as "64M"), optionally an overlay."""
    args = ["qemu-img", "create", "-q", "-f", "qcow2"]
    if backing is not None:
        args += ["-b", Path(backing).resolve(), "-F", image_info(backing)["format"]]
    _run(*args, path, str(size))
    return Path(path)


def create_raw(path: Path, size: int | str) -> Path:
    _run("qemu-img", "create", "-q", "-f", "raw", path, str(size))
    return Path(path)


def backing_chain(path: Path) -> list[dict]:
    """`qemu-img info` of PATH then each backing image; -U reads images a running VM holds."""
    return json.loads(_run("qemu-img", "info", "-U", "--output=json", "--backing-chain", path))


def image_info(path: Path) -> dict:
    """`qemu-img info` of PATH alone (format, virtual-size, snapshots, backing-filename...)."""
    return backing_chain(path)[0]


def write_pattern(path: Path, pattern_byte: int, offset: int, length: int) -> None:
    # Name the format: a probed raw image refuses writes to its first sector.
    fmt = image_info(path)["format"]
    _run("qemu-io", "-f", fmt, "-c", f"write -P {pattern_byte:#x} {offset} {length}", path)


def check_pattern(
    path: Path, pattern_byte: int, offset: int, length: int, *, snapshot: str | None = None
) -> bool:
    """Whether every byte in the range is PATTERN_BYTE, in the image or its internal SNAPSHOT."""
    if snapshot is not None:
        with tempfile.TemporaryDirectory() as tmp:
            copy = extract_snapshot(path, snapshot, Path(tmp) / "snapshot.qcow2")
            return check_pattern(copy, pattern_byte, offset, length)
    fmt = image_info(path)["format"]
    read = f"read -P {pattern_byte:#x} {offset} {length}"
    proc = subprocess.run(
        ["qemu-io", "-r", "-U", "-f", fmt, "-c", read, str(path)], capture_output=True, text=True
    )
    # qemu-io's exit status has not always reflected a failed command: read its report too.
    return proc.returncode == 0 and "verification failed" not in proc.stdout + proc.stderr


def extract_snapshot(path: Path, snapshot: str, out: Path) -> Path:
    """Internal snapshot SNAPSHOT of qcow2 PATH as a standalone qcow2 image OUT."""
    # qemu's option syntax: a comma inside a value is written twice.
    name = snapshot.replace(",", ",,")
    _run("qemu-img", "convert", "-U", "-O", "qcow2", "-l", f"snapshot.name={name}", path, out)
    return Path(out)
