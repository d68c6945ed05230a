"""Test-driver node files standing in for hypervisors: one file is one host.

Each domain carries a chain of snapshots, half internal and half external (like
bench/scan_speed.py), taken minutes before the run so that the findings are the audit's own
(SNAP002 on the internal half, SNAP014 on chains deeper than its limit), not age warnings.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

_DOMAIN = """<domain type='test'><name>{name}</name><uuid>{uuid}</uuid>
<memory>1048576</memory><os><type>hvm</type></os><devices>
<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
<source file='/var/lib/libvirt/images/{name}.qcow2'/><target dev='vda' bus='virtio'/></disk>
</devices>
{snapshots}</domain>
"""
_SNAPSHOT = """<test:domainsnapshot><name>{snap}</name><state>shutoff</state>
<creationTime>{created}</creationTime>{parent}<memory snapshot='no'/><disks>{disk}</disks>
<domain type='kvm'><name>{name}</name><uuid>{uuid}</uuid><memory>1048576</memory>
<os><type>hvm</type></os><devices><disk type='file' device='disk'>
<driver name='qemu' type='qcow2'/><source file='/var/lib/libvirt/images/{name}.qcow2'/>
<target dev='vda' bus='virtio'/></disk></devices></domain>
<active>{active}</active></test:domainsnapshot>
"""
_INTERNAL = "<disk name='vda' snapshot='internal'/>"
_EXTERNAL = (
    "<disk name='vda' snapshot='external' type='file'><driver type='qcow2'/>"
    "<source file='/var/lib/libvirt/images/{name}.{snap}'/></disk>"
)


def node_xml(host: int, domains: int, snapshots: int) -> str:
    now = int(time.time())
    parts = ["<node xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>\n"]
    for d in range(domains):
        name = f"h{host:03d}-vm{d:05d}"
        dom_uuid = uuid.UUID(int=(host << 64) | d)
        snaps, parent = [], ""
        for s in range(snapshots):
            snap = f"snap-{s:03d}"
            disk = (_INTERNAL if s % 2 else _EXTERNAL).format(name=name, snap=snap)
            snaps.append(
                _SNAPSHOT.format(
                    snap=snap,
                    created=now - 600 + s,
                    parent=parent,
                    disk=disk,
                    name=name,
                    uuid=dom_uuid,
                    active=int(s == snapshots - 1),
                )
            )
            parent = f"<parent><name>{snap}</name></parent>"
        parts.append(_DOMAIN.format(name=name, uuid=dom_uuid, snapshots="".join(snaps)))
    parts.append("</node>\n")
    return "".join(parts)


def write_nodes(directory: Path, hosts: int, domains: int, snapshots: int) -> list[Path]:
    """HOSTS node files of DOMAINS x SNAPSHOTS each; their absolute paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for h in range(hosts):
        path = (directory / f"host{h:03d}.xml").resolve()
        path.write_text(node_xml(h, domains, snapshots))
        paths.append(path)
    return paths
