"""The snapshot parser: libvirt's layout, libvirt's defaults, and hostile input."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from auditor.model import DiskSource, SnapshotDisk
from auditor.sources.xml.disk_source import Volume
from auditor.sources.xml.parser import SnapshotXMLError, parse_snapshot


def parse(xml: str):
    return parse_snapshot(xml, host="test:///h", domain="vm", domain_uuid="u", current=False)


DOMAIN = """
  <domain type='kvm'><name>vm</name><devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='/images/vm.qcow2'/><target dev='vda'/></disk>
    <disk type='network' device='disk'><driver name='qemu' type='raw'/>
      <source protocol='rbd' name='pool/vm-data'><host name='ceph1' port='6789'/></source>
      <target dev='vdb'/></disk>
    <disk type='file' device='cdrom'><target dev='sda'/><readonly/></disk>
  </devices></domain>"""


def test_fields_and_disk_join():
    snap = parse(f"""<domainsnapshot><name>s1</name><description>d &amp; e</description>
      <state>disk-snapshot</state><parent><name>s0</name></parent>
      <creationTime>1706658764</creationTime><memory snapshot='no'/>
      <disks><disk name='vda' snapshot='external' type='file'><driver type='qcow2'/>
        <source file='/images/vm.s1'/></disk></disks>{DOMAIN}</domainsnapshot>""")
    assert (snap.name, snap.description, snap.state, snap.parent, snap.memory) == (
        "s1",
        "d & e",
        "disk-snapshot",
        "s0",
        "no",
    )
    assert snap.created == datetime(2024, 1, 30, 23, 52, 44, tzinfo=UTC)
    assert snap.has_domain_definition and not snap.has_guest_agent
    assert snap.disks == (
        SnapshotDisk(
            "vda",
            "external",
            DiskSource("file", "/images/vm.s1", "qcow2"),
            DiskSource("file", "/images/vm.qcow2", "qcow2"),
            "disk",
            False,
        ),
        # Unlisted, in a disk-only snapshot: libvirt's default is external.
        SnapshotDisk(
            "vdb",
            "external",
            None,
            DiskSource("network", "rbd://ceph1:6789/pool/vm-data", "raw"),
            "disk",
            False,
            defaulted=True,
            listed=False,
        ),
        # Unlisted empty CD-ROM: never captured.
        SnapshotDisk("sda", "no", None, None, "cdrom", True, defaulted=True, listed=False),
    )


def test_unlisted_disks_of_an_internal_snapshot_default_to_internal():
    snap = parse(f"""<domainsnapshot><name>s</name><state>shutoff</state>
      <memory snapshot='no'/><disks><disk name='vda' snapshot='internal'/></disks>
      {DOMAIN}</domainsnapshot>""")
    assert [(d.name, d.mode, d.defaulted) for d in snap.disks] == [
        ("vda", "internal", False),
        ("vdb", "internal", True),
        ("sda", "no", True),
    ]


def test_running_snapshot_without_memory_element_is_internal_memory():
    snap = parse("<domainsnapshot><name>s</name><state>running</state></domainsnapshot>")
    assert snap.memory == "internal"
    assert not snap.has_domain_definition
    assert snap.disks == ()


def test_disks_without_domain_keep_what_the_snapshot_says():
    snap = parse("""<domainsnapshot><name>s</name><state>shutoff</state>
      <disks><disk name='vda' snapshot='external'><source file='/o'/></disk>
      <disk name='vdb'><source file='/p'/></disk></disks></domainsnapshot>""")
    assert snap.disks == (
        SnapshotDisk("vda", "external", DiskSource("file", "/o", None), None, None, False),
        SnapshotDisk("vdb", "external", DiskSource("file", "/p", None), None, None, False),
    )


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        ("<domainsnapshot><name>s", "invalid XML: "),
        ("", "invalid XML: "),
        ("<domain><name>s</name></domain>", "root element is <domain>, expected <domainsnapshot>"),
        ("<domainsnapshot><state>shutoff</state></domainsnapshot>", "snapshot has no <name>"),
        (
            "<domainsnapshot><name>s</name><creationTime>soon</creationTime></domainsnapshot>",
            "invalid <creationTime> 'soon'",
        ),
        (
            "<domainsnapshot><name>s</name><disks><disk/></disks></domainsnapshot>",
            "a <disks>/<disk> has no name",
        ),
        (  # libxml2's message ends in a newline, before the line and column
            "<domainsnapshot>\0</domainsnapshot>",
            "invalid XML: ",
        ),
    ],
)
def test_bad_xml_is_a_one_line_error(xml, message):
    with pytest.raises(SnapshotXMLError) as error:
        parse(xml)
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "where",
    [
        "<name>s&x;</name><description>&b;&b;&b;</description>",
        "<name>s</name><disks><disk name='vda' snapshot='external'><source file='&b;'/>"
        "</disk></disks>",
    ],
)
def test_a_dtd_is_refused_and_its_entities_are_never_read(tmp_path, where):
    """An external entity is never loaded; an internal one, which libxml2 still puts into an
    attribute, never reaches the model: libvirt writes no DTD, so a file with one is refused."""
    secret = tmp_path / "secret"
    secret.write_text("TOP-SECRET")
    xml = f"""<!DOCTYPE d [<!ENTITY x SYSTEM "file://{secret}">
      <!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>
      <domainsnapshot>{where}<state>shutoff</state></domainsnapshot>"""
    with pytest.raises(SnapshotXMLError) as error:
        parse(xml)
    assert str(error.value) == "holds a DTD or entity declarations: not read"


def test_markup_in_names_is_kept_verbatim():
    snap = parse(
        "<domainsnapshot><name>&lt;img src=x onerror=alert(1)&gt;</name>"
        "<state>shutoff</state></domainsnapshot>"
    )
    assert snap.name == "<img src=x onerror=alert(1)>"


TWO_ON_ONE_IMAGE = """
  <domain type='kvm'><name>vm</name><devices>
    <disk type='file'><source file='/images/shared.qcow2'/><target dev='vda'/></disk>
    <disk type='file'><source file='/images/shared.qcow2'/><target dev='vdb'/><readonly/></disk>
    <disk type='file' snapshot='external'><source file='/images/c.qcow2'/><target dev='vdc'/>
    </disk>
  </devices></domain>"""


def test_a_path_that_names_two_disks_matches_neither():
    # libvirt refuses such metadata; snapaudit keeps the entry as written, not guessed.
    snap = parse(f"""<domainsnapshot><name>s</name><state>shutoff</state>
      <disks><disk name='/images/shared.qcow2' snapshot='internal'/></disks>
      {TWO_ON_ONE_IMAGE}</domainsnapshot>""")
    assert [(d.name, d.mode, d.listed) for d in snap.disks] == [
        ("vda", "internal", False),
        ("vdb", "internal", False),
        ("vdc", "external", False),  # unlisted: its own snapshot= even in an internal snapshot
        ("/images/shared.qcow2", "internal", True),
    ]


@pytest.mark.parametrize(
    ("disk", "mode"),
    [
        ("<disk name='vdc'/>", "internal"),  # internal snapshot: the domain's external is ignored
        ("<disk name='vdc'><source/></disk>", "internal"),  # an empty <source> names nothing
        ("<disk name='vdc'><driver type='qcow2'/></disk>", "external"),
        ("<disk name='vdc'><source file='/images/c.s'/></disk>", "external"),
        ("<disk name='/images/c.qcow2'/>", "internal"),
    ],
)
def test_listed_disk_without_mode(disk, mode):
    snap = parse(f"""<domainsnapshot><name>s</name><state>shutoff</state>
      <disks>{disk}</disks>{TWO_ON_ONE_IMAGE}</domainsnapshot>""")
    vdc = next(d for d in snap.disks if d.name == "vdc")
    assert (vdc.mode, vdc.defaulted, vdc.listed) == (mode, mode == "internal", True)
    assert len(snap.disks) == 3


@pytest.mark.parametrize(
    ("memory", "state", "expected"),
    [
        ("<memory file='/m'/>", "running", ("external", "/m")),
        ("<memory/>", "paused", ("internal", None)),
        ("", "nostate", ("no", None)),
        ("<memory snapshot='no'/>", "running", ("no", None)),
    ],
)
def test_memory_mode(memory, state, expected):
    snap = parse(f"<domainsnapshot><name>s</name><state>{state}</state>{memory}</domainsnapshot>")
    assert (snap.memory, snap.memory_file) == expected


def test_volumes_are_resolved_by_the_given_lookup():
    looked_up = []

    def volumes(pool, name):
        looked_up.append((pool, name))
        return Volume("block", "/dev/vg0/d") if pool == "vg0" else Volume(None, None, "no pool")

    snap = parse_snapshot(
        """<domainsnapshot><name>s</name><state>shutoff</state><domain><devices>
          <disk type='volume'><source pool='vg0' volume='d'/><target dev='vda'/></disk>
          <disk type='volume'><source pool='x' volume='e'/><target dev='vdb'/></disk>
          <disk type='volume'><source pool='x'/><target dev='vdc'/></disk>
        </devices></domain></domainsnapshot>""",
        host="h",
        domain="vm",
        domain_uuid="u",
        current=False,
        volumes=volumes,
    )
    assert [d.state_image for d in snap.disks] == [
        DiskSource("block", "/dev/vg0/d", None, volume="vg0/d"),
        DiskSource("volume", "x/e", None, volume="x/e", unresolved="no pool"),
        DiskSource("volume", "x/None", None, volume="x/None", unresolved="no pool or volume named"),
    ]
    assert looked_up == [("vg0", "d"), ("x", "e")]


# Embedded definitions that differ only where the parser reads (disks and channels), or only
# where it does not (an interface, a comment, whitespace between devices).
_DEVICES = [
    "<disk type='file' device='disk'><source file='/i/a.qcow2'/><target dev='vda'/></disk>",
    "<disk type='file' device='disk'><source file='/i/b.qcow2'/><target dev='vda'/></disk>",
    "<disk type='file' device='disk' snapshot='no'><source file='/i/a.qcow2'/>"
    "<target dev='vda'/></disk>",
    "<disk type='block' device='disk'><source dev='/dev/sdb'/><target dev='vda'/></disk>",
    "<disk type='file' device='cdrom'><source file='/i/a.iso'/><target dev='vda'/></disk>",
    "<disk type='file' device='disk'><source file='/i/a.qcow2'/><target dev='vda'/>"
    "<readonly/></disk>",
    "<disk type='file' device='disk'><source file='/i/a.qcow2'/><target dev='vdb'/></disk>",
    "<disk type='file' device='disk'><source file='/i/a.qcow2'/><target dev='vda'/></disk>"
    "<interface type='user'/>",
    "<interface type='user'/>"
    "<disk type='file' device='disk'><source file='/i/a.qcow2'/><target dev='vda'/></disk>",
    "<disk type='file' device='disk'><source file='/i/a.qcow2'/><target dev='vda'/></disk>"
    "<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>",
    "<disk type='file' device='disk'><source file='/i/a.qcow2'/><target dev='vda'/></disk>"
    "<channel type='unix'><target type='virtio' name='org.qemu.spice.0'/></channel>",
    "<disk type='file' device='disk'><source file='/i/b.qcow2'/><target dev='vda'/></disk>"
    "<disk type='file' device='disk'><source file='/i/a.qcow2'/><target dev='vdb'/></disk>",
    "<disk type='file' device='disk'><source file='/i/a.qcow2'/><target dev='vdb'/></disk>"
    "<disk type='file' device='disk'><source file='/i/b.qcow2'/><target dev='vda'/></disk>",
    "",
]


def test_snapshots_of_one_domain_that_embed_other_definitions_are_each_read_as_their_own():
    from auditor.sources.xml.assemble import RawDomain, RawSnapshot, build_domain

    texts = []
    for n, devices in enumerate(_DEVICES + _DEVICES[::-1]):
        texts.append(
            f"<domainsnapshot><name>s{n:02d}</name><state>shutoff</state>"
            f"<creationTime>{1700000000 + n}</creationTime><memory snapshot='no'/>"
            f"<disks><disk name='vda' snapshot='external'><source file='/i/s{n}'/></disk>"
            f"</disks><domain><name>vm</name><devices>{devices}</devices></domain>"
            "</domainsnapshot>"
        )
    raw = RawDomain(
        "vm", "u", None, tuple(RawSnapshot(f"s{n:02d}", t, False) for n, t in enumerate(texts))
    )
    domain, skipped = build_domain("test:///h", raw)
    alone = [
        parse_snapshot(t, host="test:///h", domain="vm", domain_uuid="u", current=False)
        for t in texts
    ]
    assert skipped == []
    assert [(s.disks, s.has_guest_agent) for s in domain.snapshots] == [
        (s.disks, s.has_guest_agent) for s in alone
    ]
    # Distinct definitions read differently: no result was shared where it must not be.
    read = {
        (tuple(dataclasses.replace(d, overlay=None) for d in s.disks), s.has_guest_agent)
        for s in alone
    }
    assert len(read) == 10


def test_snapshots_whose_definitions_name_their_disks_through_entities_are_skipped():
    """An attribute naming an internal entity reads as the entity's text, which the
    serialised <disk> that keys a domain's shared definitions does not hold (it says `&e;`
    whatever e is): such files are skipped, never read from one another's definition."""
    from auditor.sources.xml.assemble import RawDomain, RawSnapshot, build_domain

    texts = [
        f'<!DOCTYPE domainsnapshot [<!ENTITY e "{image}">]><domainsnapshot><name>s{n}</name>'
        f"<state>shutoff</state><creationTime>{1700000000 + n}</creationTime>"
        "<memory snapshot='no'/><domain><name>vm</name><devices><disk type='file'>"
        "<source file='&e;'/><target dev='vda'/></disk></devices></domain></domainsnapshot>"
        for n, image in enumerate(["/i/a.qcow2", "/i/b.qcow2"])
    ]
    raw = RawDomain(
        "vm", "u", None, tuple(RawSnapshot(f"s{n}", t, False) for n, t in enumerate(texts))
    )
    domain, skipped = build_domain("test:///h", raw)
    assert domain.snapshots == ()
    assert [(s.snapshot, s.reason) for s in skipped] == [
        (f"s{n}", "holds a DTD or entity declarations: not read") for n in range(2)
    ]
