"""How fast `snapaudit scan` reads remote hosts over a slow link, against minimal loops.

Starts a private libvirtd (testlab), writes HOSTS test-driver node files of DOMAINS x
SNAPSHOTS each, and puts a proxy adding DELAY each way (bench/proxy.py) in front of the
daemon's read-only socket: each node file is one remote host,
`test+tcp://127.0.0.1:PORT/ABS/node.xml`. Then, in this same run, after one untimed run of
each, REPEAT times each, interleaved:
  - snapaudit: `snapaudit scan -c URI... --format json -o FILE` end to end (a new process),
               with its peak RSS;
  - minimal:   a new process doing openReadOnly + listAllDomains + listAllSnapshots +
               getXMLDesc + lxml parse with THREADS threads per host, hosts in parallel.

    .venv/bin/python -m bench.fleet_speed --hosts 1 --domains 200 --snapshots 10
    .venv/bin/python -m bench.fleet_speed --hosts 20 --domains 50 --snapshots 10
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import compile_bytecode
from bench.nodes import write_nodes
from bench.proxy import DelayProxy
from testlab.daemon import LibvirtDaemon

MINIMAL_LOOP = """
import sys, libvirt
from concurrent.futures import ThreadPoolExecutor
from lxml import etree
threads, uris = int(sys.argv[1]), sys.argv[2:]
libvirt.registerErrorHandler(lambda *a: None, None)

def snapshots(dom):
    return dom.listAllSnapshots(0)

def read(snap):
    etree.fromstring(snap.getXMLDesc(0).encode())

def host(uri):
    conn = libvirt.openReadOnly(uri)
    with ThreadPoolExecutor(threads) as pool:
        snaps = [s for found in pool.map(snapshots, conn.listAllDomains(0)) for s in found]
        list(pool.map(read, snaps))
    conn.close()
    return len(snaps)

with ThreadPoolExecutor(len(uris)) as pool:
    print(sum(pool.map(host, uris)))
"""


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if proc.returncode:
        raise RuntimeError(f"{command[:3]} failed: {proc.stderr.decode()[-2000:]}")
    return time.perf_counter() - start


def peak_rss(command: list[str]) -> float:
    """Peak RSS in MB of COMMAND alone, measured by GNU time where it exists."""
    proc = subprocess.run(
        ["/usr/bin/time", "-f", "%M", *command], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    return int(proc.stderr.decode().strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=1)
    parser.add_argument("--domains", type=int, default=200)
    parser.add_argument("--snapshots", type=int, default=10)
    parser.add_argument("--delay", type=float, default=0.010, help="seconds each way")
    parser.add_argument("--threads", type=int, default=64, help="minimal loop, per host")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, help="passed to snapaudit as --workers")
    args = parser.parse_args()
    compile_bytecode()
    snapaudit = str(Path(sys.executable).parent / "snapaudit")

    with (
        tempfile.TemporaryDirectory(prefix="snapaudit-fleet-") as tmp,
        LibvirtDaemon(Path(tmp) / "libvirtd") as daemon,
        DelayProxy(f"{daemon.socket}-ro", args.delay) as proxy,
    ):
        nodes = write_nodes(Path(tmp) / "nodes", args.hosts, args.domains, args.snapshots)
        uris = [f"test+tcp://127.0.0.1:{proxy.port}{p}" for p in nodes]
        total = args.hosts * args.domains * args.snapshots
        print(
            f"{args.hosts} hosts x {args.domains} domains x {args.snapshots} snapshots = {total},"
            f" {args.delay * 1000:.0f} ms each way"
        )
        scan = [snapaudit, "scan", *(a for u in uris for a in ("-c", u))]
        scan += ["--format", "json", "-o", str(Path(tmp) / "report.json"), "--fail-on", "never"]
        if args.workers:
            scan += ["--workers", str(args.workers)]
        minimal = [sys.executable, "-c", MINIMAL_LOOP, str(args.threads), *uris]
        runs: dict[str, list[float]] = {"snapaudit": [], "minimal": []}
        rss = []
        # One untimed run of each first: the first to read the new hosts pays for the daemon's
        # and the kernel's cold caches, and would always be snapaudit.
        timed(scan)
        timed(minimal)
        for _ in range(args.repeat):  # interleaved: both see the same machine load
            runs["snapaudit"].append(timed(scan))
            runs["minimal"].append(timed(minimal))
        rss.append(peak_rss(scan))

    for label, seconds in runs.items():
        listed = ", ".join(f"{s:.2f}" for s in seconds)
        print(f"{label:>10}: {min(seconds):6.2f}-{max(seconds):6.2f} s   (runs: {listed})")
    ratios = [a / b for a, b in zip(runs["snapaudit"], runs["minimal"], strict=True)]
    print(f"snapaudit / minimal ({args.threads} threads a host), pairwise: "
          f"{min(ratios):.2f}-{max(ratios):.2f}x; of the best runs: "
          f"{min(runs['snapaudit']) / min(runs['minimal']):.2f}x")  # fmt: skip
    print(f"snapaudit peak RSS: {max(rss):.0f} MB")


if __name__ == "__main__":
    main()
