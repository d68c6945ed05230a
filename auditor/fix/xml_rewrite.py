"""Rewrites libvirt XML for the conversion: snapshots become external, disks move to the new
images. Everything else in the XML is kept as libvirt reported it."""

from __future__ import annotations

from collections.abc import Mapping

from lxml import etree

from auditor.sources.xml.parser import SnapshotXMLError, parse_xml

DROPPED_MEMORY_NOTE = (
    "snapaudit fix dropped this snapshot's memory state (the guest was {state}); "
    "its disks are kept as a crash-consistent disk-only snapshot."
)


def external_snapshot(
    xml: str,
    *,
    states: Mapping[str, str],
    overlays: Mapping[str, str],
    revert_overlays: Mapping[str, str],
    drop_memory: bool,
) -> str:
    """XML to redefine a snapshot as external: disk STATES (by target) are the images the
    snapshot's domain points at; OVERLAYS hold what changed after it; REVERT_OVERLAYS, for the
    current snapshot when it has children, hold the domain's changes since it was reverted to."""
    root = parse_xml(xml)
    memory = _child(root, "memory", before="disks")
    if memory.get("snapshot") != "external":  # a memory file is kept as it is
        memory.attrib.clear()
        memory.set("snapshot", "no")  # always explicit: libvirt infers internal when missing
    if drop_memory:
        state = root.find("state")
        if state is None:  # libvirt writes it in every snapshot's XML, and needs it to redefine
            raise SnapshotXMLError("no <state>: not a snapshot as libvirt reports it")
        note = DROPPED_MEMORY_NOTE.format(state=state.text)
        state.text = "disk-snapshot"
        description = _child(root, "description", before="state")
        description.text = f"{description.text}\n\n{note}" if description.text else note
    disks = _child(root, "disks", before="domain")
    listed = {d.get("name") for d in disks.iterfind("disk")}
    for name in overlays:
        if name not in listed:
            etree.SubElement(disks, "disk", name=name)
    for disk in disks.iterfind("disk"):
        if (overlay := _named(disk, overlays)) is not None:
            _make_external(disk, overlay)
    for old in root.findall("revertDisks"):
        root.remove(old)
    if revert_overlays:
        revert = etree.Element("revertDisks")
        tail = disks.tail
        disks.addnext(revert)
        # lxml before 5.0 hands the anchor's tail to the new sibling: the same bytes on both.
        disks.tail, revert.tail = tail, None
        for disk in disks.iterfind("disk"):
            copy = etree.SubElement(revert, "disk", dict(disk.attrib))
            for child in disk:
                copy.append(etree.fromstring(etree.tostring(child)))
            if (overlay := _named(disk, revert_overlays)) is not None:
                _make_external(copy, overlay)
    for tag in ("domain", "inactiveDomain"):
        definition = root.find(tag)
        if definition is not None:
            _set_disk_sources(definition, states)
    return etree.tostring(root, encoding="unicode")


def domain_with_sources(xml: str, sources: Mapping[str, str]) -> str:
    """The domain definition with each disk in SOURCES (by target) on that qcow2 image."""
    root = parse_xml(xml)
    _set_disk_sources(root, sources)
    return etree.tostring(root, encoding="unicode")


def _child(parent: etree._Element, tag: str, *, before: str) -> etree._Element:
    found = parent.find(tag)
    if found is not None:
        return found
    element = etree.Element(tag)
    anchor = parent.find(before)
    if anchor is not None:
        anchor.addprevious(element)
    else:
        parent.append(element)
    return element


def _named(disk: etree._Element, overlays: Mapping[str, str]) -> str | None:
    """The overlay OVERLAYS name for a snapshot's DISK (by its name), if any."""
    name = disk.get("name")
    return None if name is None else overlays.get(name)


def _make_external(disk: etree._Element, overlay: str) -> None:
    for child in list(disk):
        disk.remove(child)
    disk.set("snapshot", "external")
    disk.set("type", "file")
    etree.SubElement(disk, "driver", type="qcow2")
    etree.SubElement(disk, "source", file=overlay)


def _set_disk_sources(definition: etree._Element, sources: Mapping[str, str]) -> None:
    for disk in definition.iterfind("devices/disk"):
        target = disk.find("target")
        dev = target.get("dev") if target is not None else None
        path = sources.get(dev) if dev is not None else None
        if path is None:
            continue
        disk.set("type", "file")
        source = disk.find("source")
        if source is None:
            source = etree.SubElement(disk, "source")
        source.set("file", path)
        source.attrib.pop("index", None)  # a position in the old chain
        driver = disk.find("driver")
        if driver is None:
            driver = etree.Element("driver", name="qemu")
            disk.insert(0, driver)
        driver.set("type", "qcow2")
        # The old chain is not the new image's: libvirt probes the new one itself.
        for stale in disk.findall("backingStore"):
            disk.remove(stale)
