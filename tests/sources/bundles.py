"""Snapshot XML, a host as a collector reads it, and bundles built from it, good or with
their tar stream tampered with. Shared by the offline source tests: metadata directories,
bundles and their limits, and metadata batches."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

from auditor.model import Host
from auditor.sources.offline.bundle import write_bundle
from auditor.sources.xml.assemble import RawDomain, RawHost, RawSnapshot

UUID = "6f1c3c8e-4c1e-4a8e-9d3b-7b1a2f0c9e11"


def snapshot_xml(name: str, *, active: int | None = None, mode: str = "internal") -> bytes:
    active_xml = "" if active is None else f"<active>{active}</active>"
    return (
        f"<domainsnapshot><name>{name}</name><state>shutoff</state>"
        "<creationTime>1700000000</creationTime><memory snapshot='no'/>"
        f"<disks><disk name='vda' snapshot='{mode}'/></disks>"
        f"<domain type='kvm'><name>web</name><uuid>{UUID}</uuid><devices>"
        "<disk type='file' device='disk'><driver type='qcow2'/>"
        "<source file='/images/web.qcow2'/><target dev='vda'/></disk></devices></domain>"
        f"{active_xml}</domainsnapshot>"
    ).encode()


def raw_host() -> RawHost:
    domain = RawDomain(
        "web",
        UUID,
        None,
        (RawSnapshot("a", snapshot_xml("a"), False), RawSnapshot("b", snapshot_xml("b"), True)),
    )
    host = Host(uri="qemu:///system", hostname="hv1", libvirt_version="11.3.0", driver="QEMU")
    return RawHost(
        host,
        "<capabilities><guest><features><externalSnapshot/></features></guest></capabilities>",
        (domain,),
    )


def hostile_bundle(tmp_path: Path, member: tarfile.TarInfo, data: bytes = b"") -> str:
    good = io.BytesIO()
    write_bundle(good, raw_host(), None)
    good.seek(0)
    path = tmp_path / "evil.tar.gz"
    with tarfile.open(fileobj=good, mode="r:gz") as src, tarfile.open(path, "w:gz") as dst:
        for m in src:
            dst.addfile(m, src.extractfile(m))
            if m.name == "manifest.json":
                dst.addfile(member, io.BytesIO(data) if member.isreg() else None)
    return str(path)


def raw_bundle(tmp_path: Path, *blocks: bytes) -> str:
    """A bundle whose tar stream is the manifest of a good one, then BLOCKS as they are."""
    good = io.BytesIO()
    write_bundle(good, raw_host(), None)
    good.seek(0)
    with tarfile.open(fileobj=good, mode="r:gz") as src:
        manifest = src.getmember("manifest.json")
        data = src.extractfile(manifest).read()
    stream = manifest.tobuf() + data + b"\0" * (-len(data) % 512) + b"".join(blocks)
    path = tmp_path / "evil.tar.gz"
    path.write_bytes(gzip.compress(stream + b"\0" * 1024))
    return str(path)
