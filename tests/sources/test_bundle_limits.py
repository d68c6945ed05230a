"""Bundles built to make the reader loop, repeat work or take what is not one bundle: tar sizes
that point back, an index that names one file many times, members, manifests and domains
given twice, data after the archive; and what bounds a bundle's time and failures."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import time
from pathlib import Path

import pytest

from auditor.sources.offline import source
from auditor.sources.offline.bundle import read_bundle, write_bundle
from auditor.sources.offline.bundle_records import BundleError
from auditor.sources.xml.assemble import RawDomain, RawHost, RawSnapshot
from tests.helpers import run_cli
from tests.sources.bundles import (
    UUID,
    hostile_bundle,
    raw_bundle,
    raw_host,
    snapshot_xml,
)


def base256_header(name: str, kind: bytes, size: int) -> bytes:
    """A ustar header whose size field holds SIZE in base-256 (GNU's form, negative too)."""
    member = tarfile.TarInfo(name)
    member.type = kind
    block = bytearray(member.tobuf(format=tarfile.USTAR_FORMAT))
    block[124:136] = (size % (1 << 96)).to_bytes(12, "big")
    block[124] |= 0x80
    block[148:156] = b" " * 8
    block[148:155] = f"{sum(block):06o}\0".encode()
    return bytes(block)


@pytest.mark.parametrize(
    ("kind", "size"),
    [(tarfile.REGTYPE, -1536), (tarfile.DIRTYPE, -(2**62)), (tarfile.REGTYPE, 2**40)],
    ids=["points-back", "budget-reset", "huge"],
)
def test_a_size_in_base_256_is_refused(tmp_path, kind, size):
    path = raw_bundle(tmp_path, base256_header("domains/1/index.json", kind, size))
    started = time.monotonic()
    with pytest.raises(BundleError) as caught:
        read_bundle(path)
    assert str(caught.value) == (
        f"{path}: not a readable bundle: a member size in base-256: refused"
    )
    assert time.monotonic() - started < 5


def rewritten(tmp_path: Path, raw: RawHost, change) -> str:
    """RAW as a bundle, each member's bytes passed through CHANGE(name, data)."""
    good = io.BytesIO()
    write_bundle(good, raw, None)
    good.seek(0)
    path = tmp_path / "evil.tar.gz"
    with tarfile.open(fileobj=good, mode="r:gz") as src, tarfile.open(path, "w:gz") as dst:
        for member in src:
            data = change(member.name, src.extractfile(member).read())
            member.size = len(data)
            dst.addfile(member, io.BytesIO(data))
    return str(path)


def test_an_index_that_names_one_file_many_times_is_refused_at_once(tmp_path):
    def repeat(name: str, data: bytes) -> bytes:
        if not name.endswith("index.json"):
            return data
        index = json.loads(data)
        index["snapshots"] = [
            {"name": f"s{i}", "file": 1, "current": False} for i in range(100_000)
        ]
        return json.dumps(index).encode()

    path = rewritten(tmp_path, raw_host(), repeat)
    assert Path(path).stat().st_size < 300_000
    started = time.monotonic()
    proc = run_cli("scan", "--from", path, "-f", "json", "-o", str(tmp_path / "r.json"))
    assert time.monotonic() - started < 20
    assert (proc.returncode, proc.stdout) == (3, "")
    assert f"{path}: domains/1/index.json: snapshot 's1' or its file is listed twice" in proc.stderr


def test_a_snapshot_name_listed_twice_is_refused(tmp_path):
    def twice(name: str, data: bytes) -> bytes:
        if not name.endswith("index.json"):
            return data
        index = json.loads(data)
        index["snapshots"][1]["name"] = index["snapshots"][0]["name"]
        return json.dumps(index).encode()

    path = rewritten(tmp_path, raw_host(), twice)
    with pytest.raises(BundleError) as caught:
        read_bundle(path)
    assert str(caught.value) == (
        f"{path}: domains/1/index.json: snapshot 'a' or its file is listed twice"
    )


def test_a_second_manifest_or_member_is_refused(tmp_path):
    manifest = tarfile.TarInfo("manifest.json")
    manifest.size = 2
    path = hostile_bundle(tmp_path, manifest, b"{}")
    with pytest.raises(BundleError) as caught:
        read_bundle(path)
    assert str(caught.value) == f"{path}: member 'manifest.json' appears twice: refused"
    again = tarfile.TarInfo("domains/1/snapshots/1.xml")
    again.size = 3
    path = raw_bundle(
        tmp_path,
        *[again.tobuf(format=tarfile.USTAR_FORMAT) + b"<a/>".ljust(512, b"\0")] * 2,
    )
    with pytest.raises(BundleError) as caught:
        read_bundle(path)
    assert str(caught.value) == (
        f"{path}: member 'domains/1/snapshots/1.xml' appears twice: refused"
    )


@pytest.mark.parametrize("same", ["name", "uuid"])
def test_a_domain_given_twice_is_refused(tmp_path, same):
    host = raw_host()
    first = host.domains[0]
    other_uuid = UUID[:-1] + ("0" if UUID[-1] != "0" else "1")
    second = RawDomain(
        first.name if same == "name" else "db",
        first.uuid if same == "uuid" else other_uuid,
        None,
        (RawSnapshot("c", snapshot_xml("c"), True),),
    )
    path = tmp_path / "twice.tar.gz"
    with path.open("wb") as out:
        write_bundle(out, RawHost(host.host, host.capabilities, (first, second)), None)
    with pytest.raises(BundleError) as caught:
        read_bundle(str(path))
    value = first.name if same == "name" else first.uuid
    assert str(caught.value) == (
        f"{path}: domains/2/index.json: domain {same} {value!r} twice: refused"
    )


@pytest.mark.parametrize(
    "tail", [b"garbage", gzip.compress(b"x" * 1024)], ids=["garbage", "second-stream"]
)
def test_data_after_the_archive_is_refused(tmp_path, tail):
    path = tmp_path / "tail.tar.gz"
    with path.open("wb") as out:
        write_bundle(out, raw_host(), None)
    with path.open("ab") as out:
        out.write(tail)
    with pytest.raises(BundleError) as caught:
        read_bundle(str(path))
    assert str(caught.value).startswith(f"{path}: ")
    assert str(caught.value) in (
        f"{path}: data after the end of the archive: refused",
        f"{path}: not a readable bundle: Not a gzipped file (b'ga')",
    )


def test_timeout_bounds_each_bundle_like_a_host(tmp_path):
    path = tmp_path / "hv1.tar.gz"
    with path.open("wb") as out:
        write_bundle(out, raw_host(), None)
    proc = run_cli("scan", "--from", str(path), "--timeout", "0.000001", "-f", "json")
    assert proc.returncode == 3
    report = json.loads(proc.stdout)
    assert [h["error"] for h in report["hosts"]] == [f"{path}: timed out after 1e-06 s"]


def test_any_failure_of_one_source_is_its_own_error(tmp_path, monkeypatch):
    path = tmp_path / "hv1.tar.gz"
    with path.open("wb") as out:
        write_bundle(out, raw_host(), None)

    def exhausted(*_args):
        raise MemoryError

    monkeypatch.setattr(source, "read_bundle", exhausted)
    scan = source.read_source(path)
    assert (scan.host.uri, scan.host.error) == (str(path), f"{path}: out of memory")


def octal_header(name: str, size_field: bytes) -> bytes:
    """A ustar header whose size field is SIZE_FIELD as written (tarfile reads "-777")."""
    block = bytearray(tarfile.TarInfo(name).tobuf(format=tarfile.USTAR_FORMAT))
    block[124:136] = size_field.ljust(12, b"\0")
    block[148:156] = b" " * 8
    block[148:155] = f"{sum(block):06o}\0".encode()
    return bytes(block)


def test_a_negative_octal_size_is_refused(tmp_path):
    path = raw_bundle(tmp_path, octal_header("domains/1/index.json", b"-0000000777"))
    with pytest.raises(BundleError) as caught:
        read_bundle(path)
    assert str(caught.value) == (
        f"{path}: not a readable bundle: a negative member size at byte 1024: refused"
    )


def test_a_block_after_the_last_member_that_is_no_header_is_refused(tmp_path):
    # tarfile ends an archive quietly at a header it cannot read: that block is data after it.
    good = io.BytesIO()
    write_bundle(good, raw_host(), None)
    stream = gzip.decompress(good.getvalue())
    end = len(stream.rstrip(b"\0"))
    end += -end % 512  # the end of skipped.json's data, the last member's
    tampered = tmp_path / "tail.tar.gz"
    tampered.write_bytes(gzip.compress(stream[:end] + b"garbage".ljust(512, b"x") + b"\0" * 1024))
    with pytest.raises(BundleError) as caught:
        read_bundle(str(tampered))
    assert str(caught.value) == f"{tampered}: data after the end of the archive: refused"


def test_a_bundle_behind_another_users_link_is_not_read(tmp_path):
    from tests.helpers import needs_root, nobodys

    needs_root()
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    with (private / "b.tar.gz").open("wb") as out:
        write_bundle(out, raw_host(), None)
    public = tmp_path / "public"
    public.mkdir()
    public.chmod(0o1777)
    (public / "link").symlink_to(private)
    nobodys(public / "link")
    proc = run_cli("scan", "--from", str(public / "link" / "b.tar.gz"))
    assert (proc.returncode, proc.stdout) == (2, "")
    assert "not used: symlink" in proc.stderr and "belongs to uid 65534" in proc.stderr
