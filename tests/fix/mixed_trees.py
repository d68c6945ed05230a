"""Mixed internal/external snapshot trees, built with libvirt's own calls: each shape, the
internal snapshots it holds, and whether libvirt leaves the domain on an overlay no snapshot
names. Shared by the mixed-tree tests on a real libvirtd and on the embedded driver."""

from __future__ import annotations

from pathlib import Path

from testlab.trees import SnapshotTree, disk_sources
from testlab.vms import snapshot_external_offline


def external(tree: SnapshotTree, name: str, directory: Path) -> None:
    """An external disk-only snapshot of the shut-off domain; the domain moves onto the new
    overlay, where the tree's writes go from now on."""
    snapshot_external_offline(tree.dom, name, directory)
    tree.states[name] = {disk: list(blocks) for disk, blocks in tree.now.items()}
    tree.images["vda"] = Path(disk_sources(tree.dom.XMLDesc())["vda"])


def revert(tree: SnapshotTree, name: str) -> None:
    tree.revert(name)
    tree.images["vda"] = Path(disk_sources(tree.dom.XMLDesc())["vda"])


def after_external(tree: SnapshotTree, images: Path) -> None:
    """int1 -> ext1, the domain on ext1's overlay."""
    tree.write("vda", 0, 0x11, 2)
    tree.snapshot("int1")
    tree.write("vda", 2, 0x22)
    external(tree, "ext1", images)
    tree.write("vda", 3, 0x33)


def sandwich(tree: SnapshotTree, images: Path) -> None:
    """int1 -> ext1 -> int2, int2 stored inside ext1's overlay."""
    after_external(tree, images)
    tree.snapshot("int2")
    tree.write("vda", 0, 0x44)


def branched(tree: SnapshotTree, images: Path) -> None:
    """ext1 -+- int1             (inside ext1's overlay)
    +- int2 (current)   (inside the overlay libvirt made reverting to ext1)"""
    tree.write("vda", 0, 0x11)
    external(tree, "ext1", images)
    tree.write("vda", 1, 0x22)
    tree.snapshot("int1")
    tree.write("vda", 2, 0x33)
    revert(tree, "ext1")
    tree.write("vda", 3, 0x44)
    tree.snapshot("int2")
    tree.write("vda", 4, 0x55)


def reverted(tree: SnapshotTree, images: Path) -> None:
    """int1 -+- ext1            (its state image rewritten by the revert to int1)
    +- int2 (current)  (inside the base image, which the domain is on again)"""
    after_external(tree, images)
    revert(tree, "int1")
    tree.write("vda", 4, 0x55)
    tree.snapshot("int2")
    tree.write("vda", 5, 0x66)
    # libvirt ran `qemu-img snapshot -a int1` on the base image, ext1's state image: what
    # reverting to ext1 shows is the base image as the domain has it now.
    tree.states["ext1"] = {disk: list(blocks) for disk, blocks in tree.now.items()}


# shape: (how it is built, its internal snapshots, whether libvirt leaves the domain on an
# overlay no snapshot's metadata names: it drops ext1's <revertDisks> when int2 is taken)
SHAPES = {
    "after": (after_external, {"int1"}, False),
    "sandwich": (sandwich, {"int1", "int2"}, False),
    "branched": (branched, {"int1", "int2"}, True),
    "reverted": (reverted, {"int1", "int2"}, False),
}
