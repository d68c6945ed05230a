"""The directory scan behind SNAP018: one listing per directory, regular qcow2 files only,
opened without following symlinks or waiting on FIFOs, headers only."""

from __future__ import annotations

import os
import shutil
import subprocess
from itertools import pairwise

from auditor.model import FileFacts, FileFactsMap, unreferenced_in
from auditor.sources.files.orphans import unreferenced_images
from testlab.pytest_fixtures import require


def qcow2(path, backing=None):
    args = ["qemu-img", "create", "-q", "-f", "qcow2"]
    args += ["-b", str(backing), "-F", "qcow2"] if backing else []
    subprocess.run([*args, str(path), "1M"], check=True)


def test_only_regular_qcow2_files_are_read(tmp_path):
    require(shutil.which("qemu-img"), "qemu-img is not installed")
    base = tmp_path / "vm.qcow2"
    qcow2(base)
    qcow2(tmp_path / "left-over", base)
    os.mkfifo(tmp_path / "a-fifo")  # opening it for reading without O_NONBLOCK would hang
    os.symlink(tmp_path / "left-over", tmp_path / "a-link")
    (tmp_path / "a-directory").mkdir()
    (tmp_path / "not-an-image").write_bytes(b"QFI")  # a truncated header
    qcow2(tmp_path / "writing.part", base)

    found = unreferenced_images([str(tmp_path), str(tmp_path)], {str(base)})
    assert list(found) == [str(tmp_path / "left-over")]
    facts = found[str(tmp_path / "left-over")]
    assert (facts.format, facts.backing_chain, facts.unreferenced) == ("qcow2", (str(base),), True)
    assert facts.size == (tmp_path / "left-over").stat().st_size


def test_unreferenced_images_are_found_by_directory_in_any_mapping():
    facts = {
        p: FileFacts(p, True, unreferenced=p.endswith("old"))
        for p in ("/a/x.old", "/a/y", "/a/sub/z.old", "/b/w.old", "/a/c.old", "/b/v")
    }
    for files in (facts, FileFactsMap(facts)):
        assert unreferenced_in(files, ["/a"]) == ["/a/c.old", "/a/x.old"]
        assert unreferenced_in(files, {"/b", "/a/sub", "/a"}) == [
            "/a/c.old",
            "/a/sub/z.old",
            "/a/x.old",
            "/b/w.old",
        ]
        assert unreferenced_in(files, ["/c", "/"]) == []


def test_each_image_is_opened_once(tmp_path, monkeypatch):
    require(shutil.which("qemu-img"), "qemu-img is not installed")
    base = tmp_path / "vm.qcow2"
    qcow2(base)
    qcow2(tmp_path / "left-over", base)
    opened = []
    real = os.open
    monkeypatch.setattr(os, "open", lambda p, *a, **k: opened.append(p) or real(p, *a, **k))
    found = unreferenced_images([str(tmp_path)], {str(base)})
    assert list(found) == [str(tmp_path / "left-over")]
    assert found[str(tmp_path / "left-over")].backing_chain == (str(base),)
    # The left-over for its header, the image below it for its own (the end of the chain).
    assert opened == [str(tmp_path / "left-over"), str(base)]


def test_a_file_named_through_a_symlink_is_referenced_and_a_hard_link_is_not(tmp_path):
    require(shutil.which("qemu-img"), "qemu-img is not installed")
    base = tmp_path / "vm.qcow2"
    qcow2(base)
    qcow2(tmp_path / "real", base)
    os.symlink(tmp_path / "real", tmp_path / "named")  # what the domain names
    os.link(base, tmp_path / "hard")
    qcow2(tmp_path / "left-over", base)
    referenced = {str(base), str(tmp_path / "named")}
    found = unreferenced_images([str(tmp_path)], referenced)
    # "real" is the file "named" reaches; "hard" is another name of vm.qcow2's inode, but
    # a different path: an image of its own, as qemu sees it.
    assert list(found) == [str(tmp_path / "hard"), str(tmp_path / "left-over")]
    assert found[str(tmp_path / "hard")].backing_chain == ()


def test_real_paths_are_worked_out_only_for_files_that_may_be_aliases(tmp_path, monkeypatch):
    require(shutil.which("qemu-img"), "qemu-img is not installed")
    images = [tmp_path / f"img-{i}" for i in range(5)]
    qcow2(images[0])
    for below, image in pairwise(images):
        qcow2(image, below)
    qcow2(tmp_path / "left-over", images[2])
    asked = []
    real = os.path.realpath
    monkeypatch.setattr(os.path, "realpath", lambda p, **k: asked.append(p) or real(p, **k))
    referenced = {str(p) for p in images} | {str(tmp_path / "missing")}
    found = unreferenced_images([str(tmp_path)], referenced)
    assert list(found) == [str(tmp_path / "left-over")]
    # The name that does not stat, and the one candidate: not each referenced image.
    assert sorted(asked) == [str(tmp_path / "left-over"), str(tmp_path / "missing")]


def test_an_image_also_named_as_a_memory_file_has_its_directory_scanned(tmp_path):
    # Whether one domain names the image both ways or two domains share the naming, the
    # overlay on it that nothing names is found (before a host's files were gathered at once,
    # the first case missed it).
    from auditor.model import DiskSource, Domain, DomainDisk, Snapshot
    from auditor.sources.files.checks import gather_files

    require(shutil.which("qemu-img"), "qemu-img is not installed")
    disk, left = str(tmp_path / "vm.qcow2"), str(tmp_path / "left-over")
    qcow2(disk)
    qcow2(left, disk)

    def domain(name, disks=(), memory=None):
        snap = Snapshot(
            "h", name, name, "s", "running", None, None, True, None, "external", memory, ()
        )
        sources = tuple(
            DomainDisk("vda", DiskSource("file", p, "qcow2"), "disk", False) for p in disks
        )
        return Domain("h", name, name, sources, (snap,) if memory else ())

    one = gather_files([domain("vm", [disk], disk)])
    two = gather_files([domain("vm", [disk]), domain("other", memory=disk)])
    for files in (one, two):
        assert list(files) == [disk, left]
        assert (files[disk].format, files[disk].file_type) == (None, "file")  # as a plain file
        assert (files[left].backing_chain, files[left].unreferenced) == ((disk,), True)
