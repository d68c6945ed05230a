"""How fast `snapaudit scan` reads a host, against today's way and the bare minimum.

Starts a private libvirtd (testlab), defines DOMAINS x SNAPSHOTS snapshots through
VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE (metadata only: half internal, half external), then
times over one read-only connection, in this same run:
  - snapaudit:  `snapaudit scan -c URI --format json --no-check-files` end to end (a new
                process), and the same with file checks beside it;
  - minimal:    a new process doing openReadOnly + listAllDomains + listAllSnapshots +
                getXMLDesc + lxml parse, sequentially (the floor for any Python tool);
  - virsh loop: `virsh snapshot-dumpxml` once per snapshot, as operators do today.
Each is run REPEAT times and the median is kept; ratios are what to compare across machines.

    .venv/bin/python -m bench.scan_speed [--domains 1000] [--snapshots 10] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import libvirt

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

        def median(command: list[str]) -> float:
            return statistics.median(timed(command) for _ in range(args.repeat))

        # Like for like: the minimal loop reads metadata only, so the headline run does too;
        # the run with file checks (stat and qemu-img of every named file) is shown beside it.
        scan = [snapaudit, "scan", "-c", uri, "--format", "json", "--fail-on", "never"]
        results = {
            "snapaudit": median([*scan, "--no-check-files"]),
            "minimal": median([sys.executable, "-c", MINIMAL_LOOP, uri]),
            "with files": median([*scan, "--check-files"]),
        }
        if not args.skip_virsh:
            results["virsh loop"] = virsh_loop(uri, conn)  # once: it is the slow one
        conn.close()

    for label, seconds in results.items():
        print(f"{label:>11}: {seconds:8.2f} s  {seconds / total * 1000:7.3f} ms/snapshot")
    print(
        f"snapaudit / minimal loop: {results['snapaudit'] / results['minimal']:.2f}x "
        "(target <= 1.20x)"
    )
    if "virsh loop" in results:
        print(
            f"virsh loop / snapaudit:   {results['virsh loop'] / results['snapaudit']:.1f}x "
            "faster (target >= 75x)"
        )


if __name__ == "__main__":
    main()
