"""The image layer of fix mode on real qcow2 images: size estimates from the cluster tables,
overlays that store only what differs, and verification that catches any difference."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from auditor.fix import images
from auditor.images.qcow2 import Qcow2Error, Qcow2Tables
from testlab.images import create_qcow2, create_raw, write_pattern
from testlab.pytest_fixtures import require_qemu_tools
from testlab.trees import read_back

pytestmark = pytest.mark.qemu
MiB = 1024 * 1024
ODD = "two, commas,, here"


def internal_snapshot(path: Path, name: str) -> None:
    subprocess.run(["qemu-img", "snapshot", "-c", name, str(path)], check=True)


@pytest.fixture(params=["standard", "extended-l2"])
def image(request, tmp_path: Path) -> Path:
    """64 MiB: 8 MiB written, snapshot s1; 1 MiB more, snapshot ODD; 1 MiB of s1's data
    rewritten in the active layer."""
    require_qemu_tools()
    path = tmp_path / "disk.qcow2"
    options = ["-o", "extended_l2=on"] if request.param == "extended-l2" else []
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", *options, str(path), "64M"], check=True
    )
    write_pattern(path, 0xA1, 0, 8 * MiB)
    internal_snapshot(path, "s1")
    write_pattern(path, 0xB2, 8 * MiB, MiB)
    internal_snapshot(path, ODD)
    write_pattern(path, 0xC3, 0, MiB)
    return path


def test_cluster_tables_count_exactly_what_differs(image: Path):
    with Qcow2Tables(str(image)) as tables:
        assert tables.differing_bytes("s1", "s1") == 0
        assert tables.differing_bytes(ODD, "s1") == MiB
        assert tables.differing_bytes(None, ODD) == MiB
        assert tables.differing_bytes(None, "s1") == 2 * MiB
        with pytest.raises(Qcow2Error, match="no single internal snapshot 'nope'"):
            tables.differing_bytes("nope", None)


def test_overlays_hold_only_the_differences_and_verify(image: Path, tmp_path: Path):
    base = str(tmp_path / "s1.qcow2")
    images.create_image(base, str(image), "qcow2", "s1", None, 65536)
    overlay = str(tmp_path / "odd.qcow2")
    images.create_image(overlay, str(image), "qcow2", ODD, base, 65536)
    images.verify_image(base, str(image), "qcow2", "s1")
    images.verify_image(overlay, str(image), "qcow2", ODD)
    assert read_back(overlay, [0xA1] * 8 + [0xB2] + [0] * 55) == []
    # 1 MiB of data plus an empty image's metadata, within the estimate.
    estimate = MiB + images.metadata_bytes(64 * MiB, 65536)
    assert MiB < Path(overlay).stat().st_size <= estimate
    assert not list(tmp_path.glob("*.part"))


def test_verification_catches_content_and_size(image: Path, tmp_path: Path):
    require_qemu_tools()
    copy = str(tmp_path / "copy.qcow2")
    images.create_image(copy, str(image), "qcow2", "s1", None, 65536)
    write_pattern(Path(copy), 0xFF, 60 * MiB, 512)  # one sector, far from the data
    with pytest.raises(images.ImageError, match="content differs from its source"):
        images.verify_image(copy, str(image), "qcow2", "s1")
    small = create_qcow2(tmp_path / "small.qcow2", "32M")
    with pytest.raises(images.ImageError, match="virtual size 33554432, source has 67108864"):
        images.verify_image(str(small), str(image), "qcow2", "s1")


def test_not_qcow2_and_unknown_snapshots(tmp_path: Path):
    require_qemu_tools()
    raw = create_raw(tmp_path / "disk.raw", "1M")
    with pytest.raises(Qcow2Error, match="not a qcow2 image"):
        Qcow2Tables(str(raw))
    qcow2 = create_qcow2(tmp_path / "disk.qcow2", "1M")
    missing = pytest.raises(
        images.ImageError, match=r"^qemu-nbd: Failed to load snapshot: Can't find snapshot$"
    )
    with missing, images.export(str(qcow2), "qcow2", "nope"):
        pass
