"""How long `snapaudit fix --apply` takes against the bare image operations it is built from.

Starts a private libvirtd (testlab), defines a shut-off domain with one SIZE MiB qcow2 disk
filled with DATA MiB, takes 3 internal snapshots in a chain (each after CHANGE MiB of new
writes) and changes CHANGE MiB more. Then, REPEAT times each, in this same run:
  - snapaudit: `snapaudit fix --domain bench --apply` end to end (a new process: scan,
               plan, journal, images, verification, libvirt metadata), then --rollback;
  - bare:      the same qemu-img and qemu-nbd commands with nothing around them: convert
               the first snapshot; export each later state and the current disk with
               qemu-nbd, create an overlay on it and rebase it onto its parent; export each
               source again and `qemu-img compare` every new image with it.
The medians and their ratio are printed (target: snapaudit <= 1.3x bare).

    .venv/bin/python -m bench.fix_speed [--size 1024] [--data 1024] [--change 64] [--repeat 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import libvirt

from auditor.fix.images import export, snapshot_option
from testlab.daemon import LibvirtDaemon
from testlab.trees import SnapshotTree

MiB = 1024 * 1024
SNAPSHOTS = ("first", "second", "third")
SNAPAUDIT = Path(sys.executable).parent / "snapaudit"


def build(conn: libvirt.virConnect, directory: Path, size: int, data: int, change: int) -> Path:
    tree = SnapshotTree(conn, "bench", directory, size_mib=size)
    tree.write("vda", 0, 0x11, data)
    for index, name in enumerate(SNAPSHOTS):
        tree.snapshot(name)
        tree.write("vda", index * change, 0x21 + index, change)  # rewrite part of the data
    return tree.images["vda"]


def run(*args: str | Path) -> None:
    subprocess.run([str(a) for a in args], check=True, capture_output=True)


def bare(image: Path, out: Path) -> None:
    """The conversion's image work and verification, and nothing else."""
    states = [*SNAPSHOTS, None]
    paths = [out / f"{name or 'current'}.qcow2" for name in states]
    run("qemu-img", "convert", "-q", "-f", "qcow2", "-O", "qcow2", "-l",
        snapshot_option(SNAPSHOTS[0]), image, paths[0])  # fmt: skip
    for tag, path, parent in zip(states[1:], paths[1:], paths, strict=False):
        with export(str(image), "qcow2", tag) as nbd:
            run("qemu-img", "create", "-q", "-f", "qcow2", "-b", nbd, "-F", "raw", path)
            run("qemu-img", "rebase", "-q", "-f", "qcow2", "-b", parent, "-F", "qcow2", path)
    for tag, path in zip(states, paths, strict=True):
        with export(str(image), "qcow2", tag) as nbd:
            run("qemu-img", "compare", "-q", "-f", "qcow2", "-F", "raw", path, nbd)


def timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="disk size, MiB")
    parser.add_argument("--data", type=int, default=1024, help="MiB written before snapshots")
    parser.add_argument("--change", type=int, default=64, help="MiB changed between states")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="fix-bench-", dir="/var/tmp") as tmp:
        root = Path(tmp)
        with LibvirtDaemon(root / "libvirtd") as daemon:
            conn = libvirt.open(daemon.uri)
            start = time.perf_counter()
            image = build(conn, root / "images", args.size, args.data, args.change)
            print(
                f"built a {args.size} MiB disk, {args.data} MiB written, 3 snapshots "
                f"{args.change} MiB apart in {time.perf_counter() - start:.1f} s"
            )
            state = root / "state"
            fix = [SNAPAUDIT, "fix", "-c", daemon.uri, "--state-dir", state, "--domain", "bench"]

            def snapaudit() -> None:
                run(*fix, "--apply")

            ours, theirs = [], []
            for _ in range(args.repeat):
                ours.append(timed(snapaudit))
                (journal,) = state.glob("*.journal")
                run(SNAPAUDIT, "fix", "--rollback", journal)
                journal.unlink()
                out = root / "bare"
                out.mkdir()
                theirs.append(timed(lambda out=out: bare(image, out)))
                shutil.rmtree(out)
            conn.close()

    mine, floor = statistics.median(ours), statistics.median(theirs)
    print(f"  snapaudit fix --apply: {mine:6.2f} s   (runs: {', '.join(f'{t:.2f}' for t in ours)})")
    print(
        f"  bare qemu-img + nbd:   {floor:6.2f} s   (runs: {', '.join(f'{t:.2f}' for t in theirs)})"
    )
    print(f"snapaudit / bare: {mine / floor:.2f}x (target <= 1.30x)")


if __name__ == "__main__":
    main()
