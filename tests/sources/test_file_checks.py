"""File checks read qcow2 headers natively, each image once, and say what qemu-img says."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from auditor.images import qcow2
from auditor.model import FileFacts
from auditor.sources.files import checks
from testlab.pytest_fixtures import require_qemu_tools


def img(*args: str | Path) -> None:
    subprocess.run(["qemu-img", *map(str, args)], check=True, capture_output=True)


def qemu_info(path: Path) -> dict:
    out = subprocess.run(
        ["qemu-img", "info", "-U", "--output=json", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out)


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """Chains of every shape the native reader follows, and some it leaves to qemu-img."""
    require_qemu_tools()
    img("create", "-q", "-f", "raw", tmp_path / "base.raw", "4M")
    img("create", "-q", "-f", "qcow2", "-o", "compat=0.10", tmp_path / "v2.qcow2", "3M")
    img("create", "-q", "-f", "qcow2", tmp_path / "base.qcow2", "8M")
    img("snapshot", "-c", "first tag", tmp_path / "base.qcow2")
    img("snapshot", "-c", "zweiter-ü", tmp_path / "base.qcow2")
    # Absolute and relative backing names, with and without a backing format.
    img("create", "-q", "-f", "qcow2", "-b", tmp_path / "base.qcow2", "-F", "qcow2", tmp_path / "a")
    img("create", "-q", "-f", "qcow2", "-b", "a", "-F", "qcow2", tmp_path / "b")
    (tmp_path / "sub").mkdir()
    img("create", "-q", "-f", "qcow2", "-b", "../b", "-F", "qcow2", tmp_path / "sub" / "c")
    img("create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", tmp_path / "on-raw")
    img("create", "-q", "-f", "qcow2", "-o", "data_file=" + str(tmp_path / "d.data"),
        tmp_path / "datafile.qcow2", "1M")  # fmt: skip
    img("create", "-q", "-f", "vmdk", tmp_path / "disk.vmdk", "1M")
    img("create", "-q", "-u", "-f", "qcow2", "-b", "gone", "-F", "qcow2", tmp_path / "broken", "1M")
    # A backing format not given: qemu probes it (here it finds qcow2).
    img("create", "-q", "-f", "qcow2", "-b", tmp_path / "a", "-F", "qcow2", tmp_path / "probe")
    forget_backing_format(tmp_path / "probe")
    # A backing format that says raw where the image is qcow2: the path has two readings,
    # and the first top (by path) that reaches it decides which one is reported.
    img("create", "-q", "-f", "qcow2", "-u", "-b", "a", "-F", "raw", tmp_path / "on-a-as-raw", "8M")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    # A loop: qemu-img refuses it in its own words.
    img("create", "-q", "-u", "-f", "qcow2", "-b", "loop2", "-F", "qcow2", tmp_path / "loop1", "1M")
    img("create", "-q", "-u", "-f", "qcow2", "-b", "loop1", "-F", "qcow2", tmp_path / "loop2", "1M")
    return tmp_path


def forget_backing_format(path: Path) -> None:
    """End the header extensions where the backing format is (qemu-img no longer writes
    images without one; older tools did)."""
    with open(path, "r+b") as f:
        head = f.read(4096)
        at = head.index(bytes.fromhex("e2792aca"))
        f.seek(at)
        f.write(bytes(8))


NATIVE = ["base.raw", "v2.qcow2", "base.qcow2", "a", "b", "sub/c", "on-raw", "probe", "on-a-as-raw"]


@pytest.mark.parametrize("name", [*NATIVE, "datafile.qcow2"])
def test_native_headers_agree_with_qemu_img(images, name):
    path = images / name
    info = qemu_info(path)
    fmt = "raw" if name.endswith(".raw") else None
    try:
        header = qcow2.read_header(str(path), fmt)
    except qcow2.Qcow2Error:
        assert name == "datafile.qcow2"  # left to qemu-img: the data lives in another file
        return
    assert header.format == info["format"]
    assert header.virtual_size == info["virtual-size"]
    assert header.allocated == info["actual-size"]
    assert header.backing_file == info.get("backing-filename")
    assert header.backing_format == info.get("backing-filename-format")
    assert header.snapshots == tuple(s["name"] for s in info.get("snapshots", ()))


def test_gathered_facts_are_those_qemu_img_gives(images):
    tops = [str(images / n) for n in [*NATIVE, "disk.vmdk", "broken", "datafile.qcow2"]]
    tops += [str(images / n) for n in ("missing", "dangling", "loop1")]
    native = checks.gather(tops)
    via_qemu = {}
    for top in sorted(tops):
        for item in checks.image_chain(top):
            via_qemu.setdefault(item.path, item)
    assert native == via_qemu
    assert native[str(images / "sub" / "c")].backing_chain == tuple(
        str(images / n) for n in ("b", "a", "base.qcow2")
    )
    assert native[str(images / "base.qcow2")].internal_snapshots == ("first tag", "zweiter-ü")
    assert native[str(images / "broken")].error.startswith("Could not open")
    assert native[str(images / "missing")] == checks.FileFacts(str(images / "missing"), False)
    assert native[str(images / "dangling")].error.startswith("Could not open")
    assert "infinite loop" in native[str(images / "loop1")].error
    assert native[str(images / "a")].format == "qcow2"
    assert checks.gather([str(images / "on-a-as-raw")])[str(images / "a")].format == "raw"


def test_an_image_costs_one_open_and_one_read(images, monkeypatch):
    """The header cluster holds the backing file name: one pread per image; the snapshot
    table is read only where there is one (base.qcow2). No stat beyond the open file's."""
    calls = []
    for name in ("open", "pread", "stat", "lstat"):
        real = getattr(checks.os, name)
        wrapped = lambda *a, _n=name, _r=real, **k: calls.append(_n) or _r(*a, **k)  # noqa: E731
        monkeypatch.setattr(checks.os, name, wrapped)
    facts = checks.gather([str(images / n) for n in ("a", "b", "sub/c")])
    assert len(facts) == 4
    assert sorted(calls) == ["open"] * 4 + ["pread"] * 5


def test_a_shared_chain_is_read_once(images, monkeypatch):
    reads = []
    real = qcow2.read_header
    monkeypatch.setattr(qcow2, "read_header", lambda p, f=None: reads.append(p) or real(p, f))
    facts = checks.gather([str(images / n) for n in ("a", "b", "sub/c")])
    assert len(facts) == 4
    assert sorted(reads) == sorted(str(images / n) for n in ("a", "b", "sub/c", "base.qcow2"))


def test_native_reading_starts_no_process(images, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"a process was started: {args}")

    monkeypatch.setattr(subprocess, "run", refuse)
    facts = checks.gather([str(images / n) for n in NATIVE if n != "base.raw"])
    assert facts[str(images / "on-raw")].backing_chain == (str(images / "base.raw"),)
    assert facts[str(images / "base.raw")].format == "raw"
    assert facts[str(images / "probe")].backing_chain[0] == str(images / "a")


@pytest.mark.parametrize("latency", [0.0, 0.02])
def test_headers_are_read_several_at_once_only_where_reads_wait(tmp_path, monkeypatch, latency):
    """A local file system answers from its cache, and threads would only contend for the
    GIL; on storage where each read waits (NFS...), the waits overlap."""
    require_qemu_tools()
    img("create", "-q", "-f", "qcow2", tmp_path / "base", "1M")
    tops = [tmp_path / f"top{i:02d}" for i in range(64)]
    for top in tops:
        img("create", "-q", "-f", "qcow2", "-u", "-b", tmp_path / "base", "-F", "qcow2", top, "1M")
    expected = checks.gather(map(str, tops))
    real, running, most = qcow2.read_header, [], []

    def read_header(path, fmt=None):
        running.append(path)
        most.append(len(running))
        time.sleep(latency)
        running.remove(path)
        return real(path, fmt)

    monkeypatch.setattr(qcow2, "read_header", read_header)
    assert checks.gather(map(str, tops)) == expected
    assert len(most) == 65  # each image once
    assert max(most) == (1 if latency == 0 else checks.WORKERS)


@pytest.mark.parametrize("fmt", ["qcow2", "raw"])
def test_a_fifo_named_as_a_backing_file_does_not_block_the_scan(tmp_path, monkeypatch, fmt):
    """A FIFO below an overlay (qemu-img's open() of it would wait for a writer that never
    comes, until its timeout) is said to be one, at once."""
    require_qemu_tools()
    os.mkfifo(tmp_path / "below")
    top = tmp_path / "top"
    img("create", "-q", "-u", "-f", "qcow2", "-b", tmp_path / "below", "-F", fmt, top, "1M")
    monkeypatch.setattr(checks, "QEMU_IMG_TIMEOUT", 10)  # a failure costs 10 s, not 60
    start = time.monotonic()
    facts = checks.gather([str(top)])
    assert time.monotonic() - start < 5
    assert facts == {
        str(top): FileFacts(
            str(top),
            exists=True,
            size=facts[str(top)].size,
            format="qcow2",
            error=f"backing file {tmp_path / 'below'} is a FIFO, not an image",
            file_type="file",
        )
    }
