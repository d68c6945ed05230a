"""File checks run by a user who may not read everything (the least-privilege audit user):
an image, a directory of images or an orphan candidate it could not read is said, as a
skipped item (exit 3), never passed over; what it could read is audited as before."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from testlab.pytest_fixtures import require
from tests.helpers import CLOCK, NOBODY, needs_root

DOMAIN = """<domain type='kvm'><name>vm</name><uuid>6f1c3c8e-4c1e-4a8e-9d3b-7b1a2f0c9e11</uuid>
<memory unit='MiB'>64</memory><os><type>hvm</type></os><devices>
<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{image}'/>
<target dev='vda' bus='virtio'/></disk></devices></domain>"""
SNAPSHOT = """<domainsnapshot><name>s1</name><state>shutoff</state>
<creationTime>1700000000</creationTime><memory snapshot='no'/>
<disks><disk name='vda' snapshot='external' type='file'><driver type='qcow2'/>
<source file='{image}'/></disk></disks>{domain}<active>1</active></domainsnapshot>"""


@pytest.fixture
def world() -> Iterator[Path]:
    """A directory every user can reach (a test's tmp_path sits in root's 0700 one), with
    a host's metadata (domain vm, its current image images/vm.qcow2 an overlay of
    images/base.qcow2, the base holding an internal snapshot libvirt has no metadata for)."""
    needs_root()
    require(shutil.which("qemu-img"), "qemu-img is not installed")
    require(shutil.which("setpriv"), "setpriv (util-linux) runs as another user")
    root = Path(tempfile.mkdtemp(prefix="snapaudit-unreadable-"))
    root.chmod(0o755)
    images = root / "images"
    images.mkdir(mode=0o755)
    base, top = images / "base.qcow2", images / "vm.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "1M"], check=True)
    subprocess.run(["qemu-img", "snapshot", "-q", "-c", "hidden", str(base)], check=True)
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2", str(top)],
        check=True,
    )
    (root / "defs").mkdir()
    (root / "defs" / "vm.xml").write_text(DOMAIN.format(image=top))
    (root / "meta" / "vm").mkdir(parents=True)
    # s1 made vm.qcow2, on base.qcow2: the definition it keeps names the disk as it was.
    before = DOMAIN.format(image=base)
    (root / "meta" / "vm" / "s1.xml").write_text(SNAPSHOT.format(image=top, domain=before))
    for path in (base, top):
        path.chmod(0o644)
    try:
        yield root
    finally:
        shutil.rmtree(root)


@pytest.fixture
def scan_as_nobody(world_snapaudit: str) -> Callable[[Path], tuple[int, dict]]:
    """Scan a world's metadata as nobody: (exit code, JSON report)."""

    def scan(root: Path) -> tuple[int, dict]:
        report = root / "out" / "r.json"
        report.parent.mkdir(exist_ok=True)
        os.chown(report.parent, NOBODY, NOBODY)
        proc = subprocess.run(
            [
                *("setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"),
                *(world_snapaudit, "scan", "--from", str(root / "meta")),
                *("--domain-xml", str(root / "defs"), "--host-name", "hv", "--check-files"),
                *("--as-of", f"@{CLOCK}", "-f", f"json:{report}"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "HOME": "/"},
        )
        assert proc.stdout == "", proc.stderr
        return proc.returncode, json.loads(report.read_text())

    return scan


def verdict(report: dict) -> tuple[list, list]:
    return (
        [(f["rule"], f["message"]) for f in report["findings"]],
        [(s["domain"], s["reason"]) for s in report["skipped"]],
    )


def test_what_can_be_read_is_audited(world: Path, scan_as_nobody):
    code, report = scan_as_nobody(world)
    base = world / "images" / "base.qcow2"
    assert (code, verdict(report)) == (
        1,
        (
            [
                (
                    "SNAP011",
                    f"image {base} holds internal snapshot 'hidden' that libvirt has no"
                    " metadata for",
                )
            ],
            [],
        ),
    )


def test_an_image_that_cannot_be_read_is_skipped_not_passed(world: Path, scan_as_nobody):
    # The image with the hidden internal snapshot, unreadable: SNAP011 cannot see the tag.
    base, top = world / "images" / "base.qcow2", world / "images" / "vm.qcow2"
    base.chmod(0o000)
    code, report = scan_as_nobody(world)
    findings, skipped = verdict(report)
    assert code == 3
    # qemu-img opens vm.qcow2's chain as a whole: SNAP010 says it cannot.
    assert [rule for rule, _ in findings] == ["SNAP010"]
    assert findings[0][1].endswith(f"Could not open '{base}': Permission denied")
    # The snapshot's definition names base.qcow2 itself: the unread image is said by name.
    ((domain, reason),) = skipped
    assert domain == "vm" and reason.startswith(f"image {base} could not be read: Could not")
    assert reason.endswith(f"'{base}': Permission denied")
    base.chmod(0o644)
    top.chmod(0o000)
    code, report = scan_as_nobody(world)
    findings, skipped = verdict(report)
    assert code == 3
    assert [rule for rule, _ in findings] == ["SNAP010", "SNAP011"]  # base.qcow2 is read
    assert skipped == [
        (
            "vm",
            f"image {top} could not be read: Could not open '{top}': Could not open '{top}':"
            " Permission denied",  # qemu-img's own words
        )
    ]


def test_a_directory_of_images_that_cannot_be_listed_is_skipped(world: Path, scan_as_nobody):
    images = world / "images"
    images.chmod(0o711)  # reachable, not listable: an orphan in it would go unseen
    code, report = scan_as_nobody(world)
    findings, skipped = verdict(report)
    assert code == 3
    assert [rule for rule, _ in findings] == ["SNAP011"]
    assert skipped == [
        (None, f"directory {images} could not be read: cannot list: Permission denied")
    ]


def test_an_orphan_candidate_that_cannot_be_read_is_skipped(world: Path, scan_as_nobody):
    left = world / "images" / "left-over.qcow2"
    left.write_bytes(b"")
    left.chmod(0o000)
    code, report = scan_as_nobody(world)
    findings, skipped = verdict(report)
    assert code == 3
    assert [rule for rule, _ in findings] == ["SNAP011"]
    assert skipped == [(None, f"image {left} could not be read: Permission denied")]


def test_an_image_behind_a_directory_that_cannot_be_searched_is_not_called_missing(
    world: Path, scan_as_nobody
):
    hidden = world / "hidden"
    hidden.mkdir(mode=0o700)
    top = world / "images" / "vm.qcow2"
    moved = hidden / "vm.qcow2"
    top.rename(moved)
    for name in ("defs/vm.xml", "meta/vm/s1.xml"):
        path = world / name
        path.write_text(path.read_text().replace(str(top), str(moved)))
    code, report = scan_as_nobody(world)
    findings, skipped = verdict(report)
    assert code == 3
    assert [rule for rule, _ in findings] == ["SNAP010", "SNAP011"]  # no SNAP009: not missing
    assert skipped == [
        (None, f"directory {hidden} could not be read: cannot list: Permission denied"),
        ("vm", f"file {moved} could not be read: cannot be reached: Permission denied"),
    ]
