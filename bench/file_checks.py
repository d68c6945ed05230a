"""What file checks cost a scan: a host whose snapshots name real qcow2 overlays.

Starts a private libvirtd (testlab), creates DOMAINS chains of SNAPSHOTS qcow2 overlays over
a base image each (`qemu-img create -u -b PREV -F qcow2`), and defines each domain with its
current disk on the top overlay and one external snapshot per overlay, through
VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE (metadata only). Then, after one untimed run of each
(a new host's first reader pays for cold caches), REPEAT times each, interleaved:
  - snapaudit:        `snapaudit scan -c URI --format json -o FILE` (a new process; a local
                      connection, so every image and its backing chain is inspected);
  - --no-check-files: the same command reading the metadata only.

    .venv/bin/python -m bench.file_checks [--domains 1000] [--snapshots 10] [--repeat 3]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from pathlib import Path

import libvirt

from bench import compile_bytecode
from bench.scan_speed import span, timed
from testlab.daemon import LibvirtDaemon

DOMAIN_XML = """<domain type='qemu'><name>{name}</name><uuid>{uuid}</uuid>
<memory unit='MiB'>128</memory><os><type>hvm</type></os><devices>
<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
<source file='{top}'/><target dev='vda' bus='virtio'/></disk>
</devices></domain>"""

SNAPSHOT_XML = """<domainsnapshot><name>{snap}</name><state>shutoff</state>
<creationTime>{created}</creationTime>{parent}<memory snapshot='no'/><disks>
<disk name='vda' snapshot='external' type='file'><driver type='qcow2'/>
<source file='{overlay}'/></disk></disks>{domain}</domainsnapshot>"""


def chain(directory: Path, snapshots: int) -> list[Path]:
    """A base image and SNAPSHOTS overlays, each on the one before; all of them, base first."""
    directory.mkdir(parents=True)
    images = [directory / f"img-{i:02d}.qcow2" for i in range(snapshots + 1)]
    create = ["qemu-img", "create", "-q", "-f", "qcow2"]
    subprocess.run([*create, str(images[0]), "64M"], check=True)
    for below, image in pairwise(images):
        # -u: no need to open the image below, the size is given
        command = [*create, "-u", "-b", str(below), "-F", "qcow2", str(image), "64M"]
        subprocess.run(command, check=True)
    return images


def populate(conn: libvirt.virConnect, images: Path, domains: int, snapshots: int) -> int:
    with ThreadPoolExecutor(4) as pool:
        chains = list(pool.map(lambda d: chain(images / f"vm{d:05d}", snapshots), range(domains)))
    now = int(time.time())
    for d, images in enumerate(chains):
        name, domain_uuid = f"bench-{d:05d}", uuid.uuid4()
        dom = conn.defineXML(DOMAIN_XML.format(name=name, uuid=domain_uuid, top=images[-1]))
        parent = ""
        for s, (below, overlay) in enumerate(pairwise(images)):
            snap = f"snap-{s:03d}"
            # As libvirt records an external snapshot: the definition as it was when the
            # snapshot was taken (the disk on the image the new overlay sits on).
            domain_xml = DOMAIN_XML.format(name=name, uuid=domain_uuid, top=below)
            xml = SNAPSHOT_XML.format(
                snap=snap, created=now - 600 + s, parent=parent, overlay=overlay, domain=domain_xml
            )
            current = libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT if s == snapshots - 1 else 0
            dom.snapshotCreateXML(xml, libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE | current)
            parent = f"<parent><name>{snap}</name></parent>"
    return sum(len(c) - 1 for c in chains)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--domains", type=int, default=1000)
    parser.add_argument("--snapshots", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    compile_bytecode()
    snapaudit = str(Path(sys.executable).parent / "snapaudit")

    with (
        tempfile.TemporaryDirectory(prefix="snapaudit-files-") as tmp,
        LibvirtDaemon(Path(tmp) / "libvirtd") as daemon,
    ):
        conn = libvirt.open(daemon.uri)
        start = time.perf_counter()
        total = populate(conn, Path(tmp) / "images", args.domains, args.snapshots)
        conn.close()
        print(
            f"{total} overlays in {args.domains} chains of {args.snapshots}, one snapshot each, "
            f"defined in {time.perf_counter() - start:.1f} s"
        )
        scan = [snapaudit, "scan", "-c", daemon.ro_uri, "--format", "json"]
        scan += ["-o", str(Path(tmp) / "r.json"), "--fail-on", "never"]
        commands = {"snapaudit": scan, "--no-check-files": [*scan, "--no-check-files"]}
        runs: dict[str, list[float]] = {label: [] for label in commands}
        # One untimed run of each first: the first to read the new host pays for the daemon's
        # and the kernel's cold caches, and would always be the command listed first.
        for command in commands.values():
            timed(command)
        for _ in range(args.repeat):
            for label, command in commands.items():
                runs[label].append(timed(command))

    for label, seconds in runs.items():
        print(f"{label:>16}: {span(seconds)}")
    pairs = [a / b for a, b in zip(runs["snapaudit"], runs["--no-check-files"], strict=True)]
    best = min(runs["snapaudit"]) / min(runs["--no-check-files"])
    print(f"with files / without, pairwise: {min(pairs):.2f}-{max(pairs):.2f}x; "
          f"of the best runs: {best:.2f}x (target <= 1.50x)")  # fmt: skip


if __name__ == "__main__":
    main()
