"""How fast `snapaudit scan --from DIR` audits a snapshot metadata directory, against the bare
minimum, and how much memory it takes.

Writes a tree laid out like libvirt's own (`DOMAIN/SNAPSHOT.xml`, each snapshot with its
embedded domain, as libvirtd writes them): DOMAINS x SNAPSHOTS files, half internal and half
external, in parent chains, taken minutes before the run. The embedded definitions are
  - minimal (the default): one disk and nothing else, 0.6 kB a file, where the parse is
    cheapest and snapaudit's own work weighs most;
  - libvirt (`--definition libvirt`): the definition libvirt 11.3's QEMU driver writes for a
    q35 guest as virt-install defines one (bench/libvirt-snapshot.xml, as libvirt wrote
    it), 6 kB a file.
Then times, each as a new process:
  - snapaudit: `snapaudit scan --from DIR --format json` end to end (imports, rules, report);
  - minimal:   a Python loop that walks the tree and parses each file with lxml (the floor
               for any Python tool reading these files).
Each is run REPEAT times; min-max and the ratio of the medians are printed, with the peak
RSS of the snapaudit runs (the largest, from wait4).

    .venv/bin/python -m bench.offline_speed [--domains 10000] [--snapshots 10] [--repeat 5]
        [--definition minimal|libvirt]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench import compile_bytecode
from bench.scan_speed import DOMAIN_XML, EXTERNAL_DISK, INTERNAL_DISK, SNAPSHOT_XML

MINIMAL_LOOP = """
import os, sys
from lxml import etree
count = 0
for top, dirs, names in os.walk(sys.argv[1]):
    for name in names:
        etree.parse(os.path.join(top, name))
        count += 1
print(count)
"""


def write_tree(root: Path, domains: int, snapshots: int, definition: str = "minimal") -> int:
    """The metadata directory, as libvirtd keeps it: the current snapshot says <active>1."""
    now = int(time.time())
    template = _libvirt_template() if definition == "libvirt" else None
    total = 0
    for d in range(domains):
        name = f"bench-{d:05d}"
        domain_uuid = str(uuid.uuid4())
        directory = root / name
        directory.mkdir(parents=True)
        parent = ""
        for s in range(snapshots):
            snap = f"snap-{s:03d}"
            disk = (INTERNAL_DISK if s % 2 else EXTERNAL_DISK).format(name=name, snap=snap)
            active = int(s == snapshots - 1)
            fields = dict(snap=snap, created=now - 600 + s, parent=parent, disk=disk)
            if template is None:
                domain_xml = DOMAIN_XML.format(name=name, uuid=domain_uuid)
                xml = SNAPSHOT_XML.format(**fields, domain=domain_xml).replace(
                    "</domainsnapshot>", f"<active>{active}</active></domainsnapshot>"
                )
            else:
                xml = template.format(**fields, name=name, uuid=domain_uuid, active=active)
            (directory / f"{snap}.xml").write_text(xml)
            parent = f"<parent><name>{snap}</name></parent>"
            total += 1
    return total


def _libvirt_template() -> str:
    """bench/libvirt-snapshot.xml with its names, times and disks made fields."""
    text = (Path(__file__).parent / "libvirt-snapshot.xml").read_text()
    text = text.replace("{", "{{").replace("}", "}}")
    for written, field in [
        ("<name>before-upgrade</name>", "<name>{snap}</name>"),
        ("<state>shutoff</state>", "<state>shutoff</state>{parent}"),  # where libvirt puts it
        ("<creationTime>1796043844</creationTime>", "<creationTime>{created}</creationTime>"),
        ("<disk name='vda' snapshot='internal'/>", "{disk}"),
        ("<name>web01</name>", "<name>{name}</name>"),
        ("52e05670-b470-4406-be32-19146e9c953e", "{uuid}"),
        ("images/web01.qcow2", "images/{name}.qcow2"),
        ("<active>1</active>", "<active>{active}</active>"),
    ]:
        assert text.count(written) == 1, written
        text = text.replace(written, field)
    return text


def timed(command: list[str]) -> tuple[float, int]:
    """(seconds, peak RSS in bytes) of one run of COMMAND."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{command[0]} exited {proc.returncode}")
    return seconds, usage.ru_maxrss * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--domains", type=int, default=10_000)
    parser.add_argument("--snapshots", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--definition", choices=("minimal", "libvirt"), default="minimal")
    args = parser.parse_args()
    compile_bytecode()
    snapaudit = str(Path(sys.executable).parent / "snapaudit")

    with tempfile.TemporaryDirectory(prefix="snapaudit-bench-") as tmp:
        tree = Path(tmp) / "snapshot"
        start = time.perf_counter()
        total = write_tree(tree, args.domains, args.snapshots, args.definition)
        print(
            f"wrote {args.domains} domains x {args.snapshots} snapshots = {total} files "
            f"({args.definition} definitions) "
            f"in {time.perf_counter() - start:.1f} s"
        )
        scan = [snapaudit, "scan", "--from", str(tree), "--format", "json", "--fail-on", "never"]
        minimal = [sys.executable, "-c", MINIMAL_LOOP, str(tree)]
        runs: dict[str, list[tuple[float, int]]] = {"snapaudit": [], "minimal": []}
        for _ in range(args.repeat):  # interleaved, so that both see the same noise
            runs["snapaudit"].append(timed(scan))
            runs["minimal"].append(timed(minimal))

    for label, measured in runs.items():
        seconds = [s for s, _ in measured]
        peak = max(r for _, r in measured) / 1024**2
        print(
            f"{label:>10}: {min(seconds):6.2f}-{max(seconds):6.2f} s "
            f"(median {statistics.median(seconds):.2f} s)  peak RSS {peak:6.1f} MB"
        )
    ratio = statistics.median(s for s, _ in runs["snapaudit"]) / statistics.median(
        s for s, _ in runs["minimal"]
    )
    print(f"snapaudit / minimal loop: {ratio:.2f}x (target <= 1.30x; peak RSS <= 200 MB)")


if __name__ == "__main__":
    main()
