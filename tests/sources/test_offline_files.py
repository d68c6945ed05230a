"""Offline sources: libvirt's metadata directory and bundles, read as untrusted files."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from auditor.model import FileFacts, Host
from auditor.sources.offline.bundle import BundleError, is_bundle, read_bundle, write_bundle
from auditor.sources.offline.metadata_dir import (
    NotMetadataError,
    is_metadata_dir,
    scan_metadata_dir,
)
from tests.helpers import run_cli
from tests.sources.bundles import UUID, hostile_bundle, raw_bundle, raw_host, snapshot_xml

LINKED = "domains/1/domain.xml"


def test_metadata_dir_reads_every_snapshot_and_the_current_one(tmp_path):
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "a.xml").write_bytes(snapshot_xml("a", active=0))
    (tmp_path / "web" / "b.xml").write_bytes(snapshot_xml("b", active=1, mode="external"))
    scan = scan_metadata_dir(tmp_path, host_name="hv1")
    assert scan.host == Host(uri="hv1")
    [domain] = scan.domains
    assert (domain.name, domain.uuid) == ("web", UUID)
    assert [(s.name, s.current, s.disks[0].mode) for s in domain.snapshots] == [
        ("a", False, "internal"),
        ("b", True, "external"),
    ]
    assert scan.skipped == ()
    assert scan_metadata_dir(tmp_path).host.uri == str(tmp_path)


def test_hostile_entries_are_skipped_one_line_each_and_the_rest_audited(tmp_path):
    web = tmp_path / "web"
    web.mkdir()
    (web / "good.xml").write_bytes(snapshot_xml("good"))
    (web / "link.xml").symlink_to("/etc/shadow")
    os.mkfifo(web / "fifo.xml")
    os.mknod(web / "dev.xml", 0o600 | 0o020000, os.makedev(1, 3))  # like /dev/null
    (web / "big.xml").write_bytes(b"<a>" + b" " * (16 * 1024 * 1024) + b"</a>")
    (web / "latin1.xml").write_bytes(snapshot_xml("caf\xe9").replace(b"caf", b"caf\xe9"))
    (web / "dtd.xml").write_bytes(b'<!DOCTYPE x [<!ENTITY e "boom">]>' + snapshot_xml("dtd"))
    (web / "other.xml").write_bytes(b"<domain><name>x</name></domain>")
    (web / "broken.xml").write_bytes(b"<domainsnapshot><name>")
    (web / "unreadable.xml").mkdir()
    (tmp_path / "linked-domain").symlink_to(web)
    scan = scan_metadata_dir(tmp_path, host_name="hv")
    assert [s.name for d in scan.domains for s in d.snapshots] == ["good"]
    path = str(web)
    assert [(s.domain, s.snapshot, s.reason) for s in scan.skipped] == [
        ("linked-domain", None, f"{tmp_path}/linked-domain: is a symbolic link: not followed"),
        ("web", "big", f"{path}/big.xml: is larger than 16 MiB"),
        (
            "web",
            "broken",
            "invalid XML: Premature end of data in tag name line 1, line 1, column 23",
        ),
        ("web", "dev", f"{path}/dev.xml: is not a regular file (a character device)"),
        ("web", "dtd", f"{path}/dtd.xml: holds a DTD or entity declarations"),
        ("web", "fifo", f"{path}/fifo.xml: is not a regular file (a FIFO)"),
        ("web", "latin1", f"{path}/latin1.xml: is not UTF-8 (byte 25)"),
        ("web", "link", f"{path}/link.xml: is a symbolic link: not followed"),
        ("web", "other", "root element is <domain>, expected <domainsnapshot>"),
        ("web", "unreadable", f"{path}/unreadable.xml: is not a regular file (a directory)"),
    ]


def test_a_file_that_declares_another_encoding_than_utf8_is_skipped(tmp_path):
    """Read as UTF-7 (`+ADw-` is `<`), ASCII bytes hide a DTD from a look at the bytes, and
    its entities then name the disks: a file that declares any encoding but UTF-8 is not
    read. One that declares UTF-8, as a copy saved by an editor may, is."""
    web = tmp_path / "web"
    web.mkdir()
    declared = b"<?xml version='1.0' encoding='UTF-8'?>\n" + snapshot_xml("utf8")
    (web / "utf8.xml").write_bytes(declared)
    hidden = snapshot_xml("utf7").replace(b"/images/web.qcow2", b"&e;")
    hidden = b'+ADw-!DOCTYPE domainsnapshot [+ADw-!ENTITY e "/images/other.qcow2">]>' + hidden
    (web / "utf7.xml").write_bytes(b'<?xml version="1.0" encoding="UTF-7"?>' + hidden)
    # UTF-16 without a byte order mark: ASCII and NULs, valid UTF-8 bytes, read as UTF-16.
    wide = snapshot_xml("utf16").replace(b"/images/web.qcow2", b"&e;").decode()
    dtd = '<!DOCTYPE domainsnapshot [<!ENTITY e "/images/other.qcow2">]>'
    wide = '<?xml version="1.0"?>' + dtd + wide
    (web / "utf16.xml").write_bytes(wide.encode("utf-16-le"))
    scan = scan_metadata_dir(tmp_path, host_name="hv")
    assert [s.name for d in scan.domains for s in d.snapshots] == ["utf8"]
    assert [(s.domain, s.snapshot, s.reason) for s in scan.skipped] == [
        ("web", "utf16", f"{web}/utf16.xml: is not UTF-8 XML (byte 1 is NUL)"),
        ("web", "utf7", f"{web}/utf7.xml: declares the encoding UTF-7, not UTF-8"),
    ]


def test_names_that_are_not_utf8_are_skipped_in_words_every_report_can_write(tmp_path):
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "good.xml").write_bytes(snapshot_xml("good"))
    os.mkdir(os.fsencode(tmp_path) + b"/bad\xff")
    Path(os.fsdecode(os.fsencode(tmp_path) + b"/web/caf\xe9.xml")).write_bytes(snapshot_xml("b"))
    scan = scan_metadata_dir(tmp_path, host_name="hv")
    assert [s.name for d in scan.domains for s in d.snapshots] == ["good"]
    assert [(s.domain, s.snapshot, s.reason) for s in scan.skipped] == [
        ("bad\\xff", None, f"{tmp_path}/bad\\xff: the name is not UTF-8: not read"),
        ("web", "caf\\xe9", f"{tmp_path}/web/caf\\xe9.xml: the name is not UTF-8: not read"),
    ]


def test_what_is_not_a_metadata_dir(tmp_path):
    (tmp_path / "web.xml").write_bytes(b"<domain/>")
    assert not is_metadata_dir(tmp_path)
    assert not is_metadata_dir(tmp_path / "web.xml")
    assert not is_metadata_dir(tmp_path / "missing")
    with pytest.raises(NotMetadataError, match="not a snapshot metadata directory"):
        scan_metadata_dir(tmp_path)


def test_a_bundle_round_trips(tmp_path):
    path = tmp_path / "hv1.tar.gz"
    with path.open("wb") as out:
        write_bundle(out, raw_host(), None)
    assert is_bundle(str(path))
    scan = read_bundle(str(path))
    assert scan.host == Host(
        uri="qemu:///system",
        hostname="hv1",
        libvirt_version="11.3.0",
        driver="QEMU",
        external_snapshot_revert=True,
    )
    assert [(s.name, s.current) for d in scan.domains for s in d.snapshots] == [
        ("a", False),
        ("b", True),
    ]
    assert scan.files is None and scan.skipped == ()


@pytest.mark.parametrize(
    ("name", "kind", "message"),
    [
        ("/etc/cron.d/x", tarfile.REGTYPE, "unexpected member '/etc/cron.d/x': refused"),
        ("domains/1/../../x", tarfile.REGTYPE, "unexpected member 'domains/1/../../x': refused"),
        (
            "domains/1/domain.xml",
            tarfile.SYMTYPE,
            f"member {LINKED!r} is a link or a device: refused",
        ),
        (
            "domains/1/domain.xml",
            tarfile.LNKTYPE,
            f"member {LINKED!r} is a link or a device: refused",
        ),
        (
            "domains/1/domain.xml",
            tarfile.CHRTYPE,
            f"member {LINKED!r} is a link or a device: refused",
        ),
    ],
)
def test_hostile_bundle_members_are_refused(tmp_path, name, kind, message):
    member = tarfile.TarInfo(name)
    member.type = kind
    member.linkname = "/etc/shadow"
    path = hostile_bundle(tmp_path, member, b"x")
    with pytest.raises(BundleError) as caught:
        read_bundle(path)
    assert str(caught.value) == f"{path}: {message}"
    assert not (tmp_path / "x").exists() and not Path("/etc/cron.d/x").exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("size", "big"),
        ("size", 1.5),
        ("exists", "no"),
        ("error", 5),
        ("format", ["qcow2"]),
        ("file_type", 1),
        ("known_depth", "3"),
    ],
)
def test_file_facts_of_the_wrong_type_are_refused(tmp_path, field, value):
    facts = FileFacts(path="/images/web.qcow2", exists=True, size=1)
    path = tmp_path / "hv1.tar.gz"
    with path.open("wb") as out:
        bad = {"/images/web.qcow2": dataclasses.replace(facts, **{field: value})}
        write_bundle(out, raw_host(), bad)
    with pytest.raises(BundleError) as caught:
        read_bundle(str(path))
    assert str(caught.value) == (
        f"{path}: files.json: {field} of '/images/web.qcow2' has the wrong type"
    )


def test_lone_surrogates_in_a_bundle_are_refused(tmp_path):
    # JSON's escapes decode to lone surrogates, which no report could write out again.
    manifest = json.dumps({"format": "snapaudit/bundle/v1", "uri": "qemu:///system#\udcff"})
    path = tmp_path / "hv1.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        member = tarfile.TarInfo("manifest.json")
        member.size = len(manifest)
        tar.addfile(member, io.BytesIO(manifest.encode()))
    with pytest.raises(BundleError) as caught:
        read_bundle(str(path))
    assert str(caught.value) == (
        f"{path}: manifest.json: holds a lone surrogate, which is not Unicode text"
    )


def header(name: str, kind: bytes, size: int) -> bytes:
    member = tarfile.TarInfo(name)
    member.type, member.size = kind, size
    return member.tobuf(format=tarfile.USTAR_FORMAT)


@pytest.mark.parametrize(
    "blocks",
    [
        # One pax header of 256 KiB of digits: tarfile's parsing of it is quadratic.
        [header("x", tarfile.XHDTYPE, 256 * 1024), b"1" * 256 * 1024],
        [header("g", tarfile.XGLTYPE, 512), b"1" * 512],
        # A chain of GNU long names: tarfile follows it by recursion.
        [header("././@LongLink", tarfile.GNUTYPE_LONGNAME, 512), b"a" * 512] * 2000,
        [header("././@LongLink", tarfile.GNUTYPE_LONGLINK, 512), b"a" * 512],
        [header("s", tarfile.GNUTYPE_SPARSE, 0)],
    ],
    ids=["pax", "pax-global", "long-names", "long-link", "sparse"],
)
def test_extended_and_sparse_headers_are_refused_before_tarfile_reads_them(tmp_path, blocks):
    path = raw_bundle(tmp_path, *blocks)
    with pytest.raises(BundleError) as caught:
        read_bundle(path)
    assert str(caught.value) == (
        f"{path}: not a readable bundle: an extended or sparse header at byte 1024: refused"
    )


def test_not_a_bundle(tmp_path):
    text = tmp_path / "x.tar.gz"
    text.write_bytes(b"\x1f\x8bnot really")
    with pytest.raises(BundleError, match="not a readable bundle"):
        read_bundle(str(text))
    plain = io.BytesIO()
    with tarfile.open(fileobj=plain, mode="w:gz") as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"{}"))
    text.write_bytes(plain.getvalue())
    with pytest.raises(BundleError, match=r"not a snapaudit bundle \(snapaudit/bundle/v1\)"):
        read_bundle(str(text))


def test_a_domain_xml_directory_that_is_missing_is_a_usage_error(tmp_path):
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "a.xml").write_bytes(snapshot_xml("a"))
    missing = tmp_path / "missing"
    proc = run_cli("scan", "--from", str(tmp_path), "--domain-xml", str(missing))
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        2,
        "",
        f"snapaudit: --domain-xml {missing}: not a directory that can be read\n",
    )


def test_a_bundle_cut_short_or_holding_too_much_before_an_index_is_refused(tmp_path, monkeypatch):
    good = io.BytesIO()
    write_bundle(good, raw_host(), None)
    good.seek(0)
    cut = tmp_path / "cut.tar.gz"
    with tarfile.open(fileobj=good, mode="r:gz") as src, tarfile.open(cut, "w:gz") as dst:
        for member in src:
            if member.name == "skipped.json":  # the last member: the copy stops before it
                break
            dst.addfile(member, src.extractfile(member))
    with pytest.raises(BundleError) as caught:
        read_bundle(str(cut))
    assert str(caught.value) == f"{cut}: the bundle is cut short (no skipped.json, its last member)"

    from auditor.sources.offline import bundle

    monkeypatch.setattr(bundle, "MAX_PENDING_BYTES", 100)  # the snapshots' XML is larger
    whole = tmp_path / "whole.tar.gz"
    whole.write_bytes(good.getvalue())
    with pytest.raises(BundleError) as caught:
        read_bundle(str(whole))
    assert str(caught.value) == f"{whole}: more domain data than a bundle holds before its index"


def test_a_domain_directory_swapped_for_a_link_is_never_read_through_it(tmp_path):
    # Another user swaps a domain's directory with a link to a root-only one, over and over,
    # while the scan reads: the secret snapshot there must never reach a report.
    import ctypes
    import threading

    secret = tmp_path / "secret"
    secret.mkdir(mode=0o700)
    (secret / "classified.xml").write_bytes(snapshot_xml("classified"))
    tree = tmp_path / "meta"
    for n in range(20):
        (tree / f"vm{n:02d}").mkdir(parents=True)
        (tree / f"vm{n:02d}" / "a.xml").write_bytes(snapshot_xml("a"))
    (tree / "swap").symlink_to(secret)
    libc = ctypes.CDLL(None, use_errno=True)
    stop = threading.Event()

    def swap() -> None:
        a, b = bytes(tree / "vm05"), bytes(tree / "swap")
        while not stop.is_set():
            libc.renameat2(-100, a, -100, b, 2)  # RENAME_EXCHANGE

    racer = threading.Thread(target=swap)
    racer.start()
    try:
        reports = [
            run_cli("scan", "--from", str(tree), "-f", "json", "--fail-on", "never").stdout
            for _ in range(10)
        ]
    finally:
        stop.set()
        racer.join()
    assert all(report.startswith("{") for report in reports)
    assert not [r for r in reports if "classified" in r]
