"""`snapaudit collect` and `snapaudit scan --from` on the command line: bundles per host,
unreachable hosts, output errors, hostile outputs and inputs, and every policy feature."""

from __future__ import annotations

import gzip
import io
import json
import os
import socket
import tarfile
from pathlib import Path

import libvirt
import pytest

from testlab.pytest_fixtures import require
from tests.helpers import NOBODY, fixture_uri, run_cli

CLEAN = fixture_uri("clean_host.xml")
SEED = fixture_uri("seed_examples.xml")
SECRETS = fixture_uri("secrets.xml")
MISSING = "test:///nonexistent/host.xml"
# The test driver reports this machine's host name; bundles are named after it.
STEM = socket.gethostname()
REDEFINE = libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE


def collect(*args: str) -> tuple[int, str, str]:
    proc = run_cli("collect", *args)
    return proc.returncode, proc.stdout, proc.stderr


def scan_json(*args: str, code: int | None = None) -> dict:
    proc = run_cli("scan", *args, "-f", "json")
    if code is not None:
        assert proc.returncode == code, proc.stderr
    return json.loads(proc.stdout)


def bundle_of(uri: str, path: Path) -> Path:
    assert collect("-c", uri, "-o", str(path))[0] == 0
    return path


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isreg()}


# -- collect -------------------------------------------------------------------------------------


def test_several_hosts_into_a_directory_one_new_bundle_each(tmp_path):
    mine = tmp_path / f"{STEM}.snapaudit.tar.gz"
    mine.write_bytes(b"an earlier bundle\n")
    planted = tmp_path / f"{STEM}-2.snapaudit.tar.gz"
    planted.symlink_to("/etc/shadow")
    code, out, err = collect("-c", CLEAN, "-c", SEED, "-o", str(tmp_path))
    assert (code, err) == (0, "")
    first, second = (tmp_path / f"{STEM}-{n}.snapaudit.tar.gz" for n in (3, 4))
    assert out == (
        f"{first}: {CLEAN}, 2 domains, 1 snapshots\n{second}: {SEED}, 1 domains, 2 snapshots\n"
    )
    assert mine.read_bytes() == b"an earlier bundle\n"
    assert planted.is_symlink() and os.readlink(planted) == "/etc/shadow"
    assert json.loads(members(first)["manifest.json"])["uri"] == CLEAN
    assert json.loads(members(second)["manifest.json"])["uri"] == SEED
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == sorted(
        [mine.name, planted.name, first.name, second.name]
    )


def test_a_host_that_cannot_be_reached_exits_3_and_the_others_are_written(tmp_path):
    code, out, err = collect("-c", CLEAN, "-c", MISSING, "-c", SEED, "-o", str(tmp_path))
    assert code == 3
    assert err == (
        f"snapaudit: cannot collect {MISSING}: Failed to open file "
        "'/nonexistent/host.xml': No such file or directory\n"
    )
    names = [f"{STEM}.snapaudit.tar.gz", f"{STEM}-2.snapaudit.tar.gz"]
    assert out == (
        f"{tmp_path / names[0]}: {CLEAN}, 2 domains, 1 snapshots\n"
        f"{tmp_path / names[1]}: {SEED}, 1 domains, 2 snapshots\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("-c", CLEAN, "-c", SEED, "-o", "{tmp}/one.tar.gz"),
         "{tmp}/one.tar.gz: several hosts need -o DIR, an existing directory"),
        (("-c", CLEAN, "-o", "{tmp}/no/such/b.tar.gz"),
         "cannot write {tmp}/no/such/b.tar.gz: directory {tmp}/no/such does not exist"),
        (("-c", CLEAN, "-o", "{tmp}/b.tar.gz", "--timeout", "0"),
         "--timeout must be a positive number of seconds"),
    ],
)  # fmt: skip
def test_output_errors_exit_2_with_one_line_and_write_nothing(tmp_path, args, message):
    code, out, err = collect(*(a.format(tmp=tmp_path) for a in args))
    assert (code, out) == (2, "")
    assert err == f"snapaudit: {message.format(tmp=tmp_path)}\n"
    assert list(tmp_path.iterdir()) == []


def test_a_planted_symlink_as_output_is_refused_like_scans(tmp_path):
    require(os.geteuid() == 0, "this test plants files owned by another user: run as root")
    victim = tmp_path / "victim"
    victim.write_bytes(b"root:secret\n")
    public = tmp_path / "public"
    public.mkdir()
    public.chmod(0o1777)
    link = public / "b.tar.gz"
    link.symlink_to(victim)
    os.lchown(link, NOBODY, NOBODY)
    code, out, err = collect("-c", CLEAN, "-o", str(link))
    assert (code, out) == (2, "")
    assert err == (
        f"snapaudit: cannot write {link}: symlink {link} belongs to uid {NOBODY}, neither root "
        "nor the invoking user\n"
    )
    assert victim.read_bytes() == b"root:secret\n"


def test_no_secret_reaches_a_bundle(tmp_path):
    """The definition and the snapshot hold VNC and SPICE passwords and an HTTPS disk's
    cookie; libvirt shows them only to VIR_DOMAIN_XML_SECURE callers, which collect is not."""
    node = Path(SECRETS.removeprefix("test://")).read_bytes()
    secrets = [b"VncSkrt1", b"SpicePass-Sekrit-2", b"CookieValue-Sekrit-7"]
    assert all(node.count(s) == 2 for s in secrets)  # definition and snapshot
    path = bundle_of(SECRETS, tmp_path / "b.tar.gz")
    raw = gzip.decompress(path.read_bytes())
    assert [s for s in secrets if s in raw or s in path.read_bytes()] == []
    found = members(path)
    for name in ("domains/1/domain.xml", "domains/1/snapshots/1.xml"):
        xml = found[name]  # the rest of the devices is kept
        assert b"<graphics type='vnc'" in xml and b"<graphics type='spice'" in xml
        assert b"iso.example" in xml and b"ceph.example" in xml


@pytest.mark.qemu
def test_no_secret_reaches_a_bundle_from_libvirtd(conn, libvirtd, tmp_path):
    """On a real libvirtd, over its read-only socket: the VNC password and the cookies
    of a domain and of its snapshot's copy stay out of the bundle. (Secret objects' values
    are never in domain XML, and collect calls no secret API.)"""
    spice = "<graphics type='spice' autoport='yes' passwd='SpicePass-Sekrit-2'/>"
    # This QEMU is built without SPICE, which the test driver checks above.
    node = Path(SECRETS.removeprefix("test://")).read_text().replace(spice, "")
    domain = node[node.index("<domain type='test'>") : node.index("<test:domainsnapshot>")]
    dom = conn.defineXML(domain.replace("type='test'", "type='qemu'") + "</domain>")
    snapshot = node[node.index("<test:domainsnapshot>") : node.index("</test:domainsnapshot>")]
    snapshot = snapshot.replace("test:domainsnapshot", "domainsnapshot")
    # libvirtd refuses an internal snapshot that leaves a writable disk out.
    snapshot = snapshot.replace("name='vdb' snapshot='no'", "name='vdb' snapshot='internal'")
    snapshot = snapshot.replace("type='test'", "type='qemu'").replace("<active>1</active>", "")
    dom.snapshotCreateXML(snapshot + "</domainsnapshot>", REDEFINE)
    leaked = [b"VncSkrt1", b"CookieValue-Sekrit-7"]
    secure = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE).encode()
    assert all(s in secure for s in leaked)  # libvirt holds them: the test can fail
    path = bundle_of(libvirtd.ro_uri, tmp_path / "b.tar.gz")
    raw = gzip.decompress(path.read_bytes())
    assert [s for s in leaked if s in raw] == []
    assert b"<name>guarded</name>" in raw and b"<name>before-upgrade</name>" in raw


# -- scan --from ---------------------------------------------------------------------------------


def test_sources_that_are_neither_bundle_nor_tree_exit_2(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "a.xml").write_text("<domainsnapshot/>")
    neither = "neither a bundle (snapaudit collect) nor a snapshot metadata directory"
    for path, message in (
        (tmp_path / "missing", f"{tmp_path / 'missing'}: no such file or directory"),
        (text, f"{text}: {neither} (DOMAIN/SNAPSHOT.xml)"),
        (flat, f"{flat}: {neither} (DOMAIN/SNAPSHOT.xml)"),
    ):
        proc = run_cli("scan", "--from", str(path))
        assert (proc.returncode, proc.stdout) == (2, "")
        assert proc.stderr == f"snapaudit: {message}\n"


def test_host_name_names_one_directory_only(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    proc = run_cli(
        "scan", "--from", str(tmp_path / "a"), "--from", str(tmp_path / "b"), "--host-name", "x"
    )
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == "snapaudit: --host-name names one --from directory; several were given\n"


def test_live_hosts_and_bundles_in_one_run(tmp_path):
    bundle = bundle_of(SEED, tmp_path / "seed.tar.gz")
    mixed = scan_json("-c", CLEAN, "--from", str(bundle), code=1)
    live = scan_json("-c", CLEAN, "-c", SEED, code=1)
    assert [h["uri"] for h in mixed["hosts"]] == [CLEAN, SEED]
    assert mixed["findings"] == live["findings"] and mixed["snapshots"] == live["snapshots"]


def broken_bundle(good: Path, path: Path) -> Path:
    """GOOD with its first domain's index.json replaced by one that is not a domain."""
    out = io.BytesIO()
    with tarfile.open(good, "r:gz") as src, tarfile.open(fileobj=out, mode="w:gz") as dst:
        for member in src:
            data = src.extractfile(member).read()
            if member.name == "domains/1/index.json":
                data = b'{"name": 1}'
                member.size = len(data)
            dst.addfile(member, io.BytesIO(data))
    path.write_bytes(out.getvalue())
    return path


def test_a_bundle_with_a_bad_member_is_that_hosts_error(tmp_path):
    bad = broken_bundle(bundle_of(SEED, tmp_path / "seed.tar.gz"), tmp_path / "bad.tar.gz")
    good = bundle_of(CLEAN, tmp_path / "clean.tar.gz")
    proc = run_cli("scan", "--from", str(bad), "--from", str(good), "-f", "json")
    assert proc.returncode == 3
    report = json.loads(proc.stdout)
    assert report["hosts"][0]["uri"] == str(bad)
    assert report["hosts"][0]["error"] == (
        f"{bad}: domains/1/index.json: name and uuid must be strings"
    )
    assert report["hosts"][1]["uri"] == CLEAN and report["hosts"][1]["error"] is None
    assert report["findings"] == scan_json("-c", CLEAN)["findings"]
    assert proc.stderr == (
        f"snapaudit: cannot scan {bad}: {bad}: domains/1/index.json: name and uuid must be "
        "strings\n"
    )


def test_waivers_baseline_and_sarif_work_from_a_bundle(tmp_path):
    bundle = bundle_of(SEED, tmp_path / "seed.tar.gz")
    config = tmp_path / "snapaudit.toml"
    config.write_text(
        "[[waivers]]\nrule = 'SNAP002'\ndomain = 'vm-name'\nsnapshot = '*'\n"
        "reason = 'legacy'\nowner = 'ops@example.com'\nexpires = 2099-01-01\n"
    )
    baseline = tmp_path / "baseline.json"
    sarif = tmp_path / "r.sarif"
    common = ("--from", str(bundle), "--config", str(config))
    recording = ("--write-baseline", str(baseline), "--fail-on", "error")
    first = run_cli("scan", *common, *recording, "-f", f"sarif:{sarif}")
    live = run_cli("scan", "-c", SEED, "--config", str(config), "-f", "sarif")
    assert first.returncode == live.returncode
    assert json.loads(sarif.read_text()) == json.loads(live.stdout)
    results = json.loads(sarif.read_text())["runs"][0]["results"]
    waived = [r for r in results if r["ruleId"] == "SNAP002"]
    assert waived and all(r["suppressions"][0]["justification"] == "legacy" for r in waived)
    again = run_cli("scan", *common, "--baseline", str(baseline), "-f", "json")
    assert (again.returncode, again.stderr) == (0, "")
    report = json.loads(again.stdout)
    assert report["findings"] and all(f["baselined"] for f in report["findings"])
