"""How fast `snapaudit scan` reads a host, against today's way and the bare minimum.

Starts a private libvirtd (testlab), defines DOMAINS x SNAPSHOTS snapshots through
VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE (metadata only: half internal, half external), then
times over one read-only connection, in this same run:
  - snapaudit:  `snapaudit scan -c URI --format json -o FILE` end to end (a new process):
                the default command, file checks included (the images do not exist here, so
                they cost each domain's definition and a lookup per path); and the same with
                --no-check-files beside it (metadata only, like the minimal loop);
  - minimal:    a new process doing openReadOnly + listAllDomains + listAllSnapshots +
                getXMLDesc + lxml parse, sequentially (the floor for any Python tool);
  - virsh loop: `virsh snapshot-dumpxml` once per snapshot, as operators do today.
Each is run once untimed (a new host's first reader pays for cold caches), then REPEAT times,
interleaved so that all see the same load; min-max is shown, and the ratios of runs taken
side by side are what to compare across machines.

    .venv/bin/python -m bench.scan_speed [--domains 1000] [--snapshots 10] [--repeat 3]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import libvirt

from bench import compile_bytecode
from testlab.daemon import LibvirtDaemon

MINIMAL_LOOP = """
import sys, libvirt
from lxml import etree
conn = libvirt.openReadOnly(sys.argv[1])
count = 0
for dom in conn.listAllDomains(0):
    for snap in dom.listAllSnapshots(0):
        etree.fromstring(snap.getXMLDesc(0).encode())
        count += 1
print(count)
"""

DOMAIN_XML = """<domain type='qemu'><name>{name}</name><uuid>{uuid}</uuid>
<memory unit='MiB'>128</memory><os><type>hvm</type></os><devices>
<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
<source file='/var/lib/libvirt/images/{name}.qcow2'/><target dev='vda' bus='virtio'/></disk>
</devices></domain>"""

SNAPSHOT_XML = """<domainsnapshot><name>{snap}</name><state>shutoff</state>
<creationTime>{created}</creationTime>{parent}<memory snapshot='no'/><disks>{disk}</disks>
{domain}</domainsnapshot>"""

INTERNAL_DISK = "<disk name='vda' snapshot='internal'/>"
EXTERNAL_DISK = (
    "<disk name='vda' snapshot='external' type='file'><driver type='qcow2'/>"
    "<source file='/var/lib/libvirt/images/{name}.{snap}'/></disk>"
)


def populate(conn: libvirt.virConnect, domains: int, snapshots: int) -> int:
    # Recent snapshots, so that the findings are the audit's own (SNAP002 on the internal
    # half, SNAP014 on chains deeper than 8), not 10,000 age warnings.
    now = int(time.time())
    total = 0
    for d in range(domains):
        name = f"bench-{d:05d}"
        domain_xml = DOMAIN_XML.format(name=name, uuid=uuid.uuid4())
        dom = conn.defineXML(domain_xml)
        parent = ""
        for s in range(snapshots):
            snap = f"snap-{s:03d}"
            disk = (INTERNAL_DISK if s % 2 else EXTERNAL_DISK).format(name=name, snap=snap)
            xml = SNAPSHOT_XML.format(
                snap=snap, created=now - 600 + s, parent=parent, disk=disk, domain=domain_xml
            )
            dom.snapshotCreateXML(xml, libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE)
            parent = f"<parent><name>{snap}</name></parent>"
            total += 1
    return total


def timed(command: list[str], **kwargs) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, **kwargs)
    return time.perf_counter() - start


def span(seconds: list[float]) -> str:
    listed = ", ".join(f"{s:.2f}" for s in seconds)
    return f"{min(seconds):6.2f}-{max(seconds):6.2f} s   (runs: {listed})"


def virsh_loop(uri: str, conn: libvirt.virConnect) -> float:
    pairs = [(d.name(), s.getName()) for d in conn.listAllDomains(0) for s in d.listAllSnapshots(0)]
    script = "\n".join(f"virsh -r -c '{uri}' snapshot-dumpxml {d} {s} >/dev/null" for d, s in pairs)
    return timed(["bash"], input=script.encode())  # too long for a command line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--domains", type=int, default=1000)
    parser.add_argument("--snapshots", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-virsh", action="store_true", help="omit the slow virsh loop")
    args = parser.parse_args()
    compile_bytecode()
    snapaudit = str(Path(sys.executable).parent / "snapaudit")

    with (
        tempfile.TemporaryDirectory(prefix="snapaudit-bench-") as tmp,
        LibvirtDaemon(Path(tmp) / "libvirtd") as daemon,
    ):
        conn = libvirt.open(daemon.uri)
        start = time.perf_counter()
        total = populate(conn, args.domains, args.snapshots)
        print(
            f"defined {args.domains} domains x {args.snapshots} snapshots = {total} "
            f"in {time.perf_counter() - start:.1f} s"
        )
        uri = daemon.ro_uri

        # The default command (JSON to a file, file checks on) against the minimal loop, and
        # the metadata-only scan beside them; interleaved, REPEAT times each.
        scan = [snapaudit, "scan", "-c", uri, "--format", "json", "-o", str(Path(tmp) / "r.json")]
        scan += ["--fail-on", "never"]
        commands = {
            "snapaudit": scan,
            "minimal": [sys.executable, "-c", MINIMAL_LOOP, uri],
            "no files": [*scan, "--no-check-files"],
        }
        runs: dict[str, list[float]] = {label: [] for label in commands}
        # One untimed run of each first: the first to read the new host pays for the daemon's
        # and the kernel's cold caches, and would always be the command listed first.
        for command in commands.values():
            timed(command)
        for _ in range(args.repeat):
            for label, command in commands.items():
                runs[label].append(timed(command))
        virsh = None if args.skip_virsh else virsh_loop(uri, conn)  # once: it is the slow one
        conn.close()

    for label, seconds in runs.items():
        print(f"{label:>10}: {span(seconds)}")
    pairs = [a / b for a, b in zip(runs["snapaudit"], runs["minimal"], strict=True)]
    best = min(runs["snapaudit"]) / min(runs["minimal"])
    print(f"snapaudit / minimal loop, pairwise: {min(pairs):.2f}-{max(pairs):.2f}x; "
          f"of the best runs: {best:.2f}x (target <= 1.00x)")  # fmt: skip
    if virsh is not None:
        print(f"virsh loop: {virsh:.2f} s, {virsh / min(runs['snapaudit']):.1f}x snapaudit's best")


if __name__ == "__main__":
    main()
