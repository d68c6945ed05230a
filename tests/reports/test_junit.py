"""JUnit XML: valid against the Ant/Jenkins JUnit schema, one test case per snapshot, failures
for unsuppressed errors, errors and skips for what could not be audited, safe for any name."""

from __future__ import annotations

import pytest
from lxml import etree

from auditor.reports import render
from tests.helpers import SCHEMAS, fixture_uri, run_cli
from tests.sample_results import HOSTILE, ODD, sample_result

SCHEMA = etree.XMLSchema(etree.parse(str(SCHEMAS / "junit.xsd")))


def validate(text: str) -> etree._Element:
    document = etree.fromstring(text.encode())
    SCHEMA.assertValid(document)
    return document


EXPECTED = """\
<?xml version='1.0' encoding='UTF-8'?>
<testsuites>
  <testsuite name="qemu+ssh://root@hv1/system" package="snapaudit" id="0" hostname="hv1.example.com" timestamp="2025-11-24T16:00:00" tests="8" failures="2" errors="1" skipped="2" time="0">
    <properties>
      <property name="uri" value="qemu+ssh://root@hv1/system"/>
      <property name="hostname" value="hv1.example.com"/>
      <property name="libvirt_version" value="11.3.0"/>
      <property name="hypervisor_version" value="9.2.0"/>
    </properties>
    <testcase name="nightly 1" classname="qemu+ssh://root@hv1/system/web" time="0">
      <error message="rule SNAP004: raised ValueError: bad state" type="rule-error">rule SNAP004: raised ValueError: bad state</error>
    </testcase>
    <testcase name="&lt;img src=x onerror=alert(1)&gt;" classname="qemu+ssh://root@hv1/system/web" time="0">
      <failure message="SNAP002: disk vda is captured inside its own image (internal snapshot)" type="SNAP002">SNAP002 internal-disk [disk vda]: disk vda is captured inside its own image (internal snapshot)
  remediation: fix internal-disk</failure>
    </testcase>
    <testcase name="odd &quot;name&quot; \\ with&#10;newline\\x1b\\x00" classname="qemu+ssh://root@hv1/system/web" time="0"/>
    <testcase name="/images/web.qcow2@old" classname="qemu+ssh://root@hv1/system/web" time="0">
      <failure message="SNAP011: image /images/web.qcow2 holds internal snapshot 'old' that libvirt has no metadata for" type="SNAP011">SNAP011 unmanaged-internal [disk vda]: image /images/web.qcow2 holds internal snapshot 'old' that libvirt has no metadata for
  remediation: fix unmanaged-internal</failure>
    </testcase>
    <testcase name="(domain)" classname="qemu+ssh://root@hv1/system/web" time="0"/>
    <testcase name="(host)" classname="qemu+ssh://root@hv1/system" time="0"/>
    <testcase name="gone" classname="qemu+ssh://root@hv1/system/db" time="0">
      <skipped message="cannot read the snapshot XML: I/O error"/>
    </testcase>
    <testcase name="deleted" classname="qemu+ssh://root@hv1/system/db" time="0">
      <skipped message="snapshot disappeared during the scan"/>
    </testcase>
    <system-out>web/nightly 1  SNAP001 error  memory state is stored inside the disk image (internal snapshot)  [waived: migration to external snapshots planned (ops, until 2026-01-31)]
web/&lt;img src=x onerror=alert(1)&gt;/vdb  SNAP006 warning  writable disk vdb is not part of the snapshot  [baselined]
web  ACME001 warning  domain has no owner tag
(host)  HOST001 warning  libvirt on this host cannot revert to or delete external snapshots
</system-out>
    <system-err/>
  </testsuite>
  <testsuite name="qemu:///system" package="snapaudit" id="1" hostname="qemu:///system" timestamp="2025-11-24T16:00:00" tests="1" failures="0" errors="1" skipped="0" time="0">
    <properties>
      <property name="uri" value="qemu:///system"/>
    </properties>
    <testcase name="scan" classname="qemu:///system" time="0">
      <error message="Failed to connect socket: Connection refused" type="host-error">Failed to connect socket: Connection refused</error>
    </testcase>
    <system-out></system-out>
    <system-err/>
  </testsuite>
  <testsuite name="snapaudit rules" package="snapaudit" id="2" hostname="localhost" timestamp="2025-11-24T16:00:00" tests="1" failures="0" errors="1" skipped="0" time="0">
    <properties/>
    <testcase name="acme-broken" classname="snapaudit.rules" time="0">
      <error message="failed to load acme:rule: ImportError: no acme" type="rule-error">failed to load acme:rule: ImportError: no acme</error>
    </testcase>
    <system-out></system-out>
    <system-err/>
  </testsuite>
</testsuites>
"""  # noqa: E501


def test_document_is_exact_and_valid():
    text = render("junit", sample_result())
    assert text == EXPECTED
    validate(text)


def test_names_survive_a_round_trip_through_an_xml_parser():
    document = validate(render("junit", sample_result()))
    names = [case.get("name") for case in document.iter("testcase")]
    # Markup is escaped, not interpreted; what XML 1.0 cannot carry is spelled out.
    assert names[1] == HOSTILE
    assert names[2] == ODD.replace("\x1b", "\\x1b").replace("\x00", "\\x00")


def test_the_schema_check_is_live():
    document = etree.fromstring(render("junit", sample_result()).encode())
    for output in document.iter("system-err"):
        output.getparent().remove(output)
    assert not SCHEMA.validate(document)


@pytest.mark.parametrize(
    "args",
    [
        ["--demo"],
        ["-c", fixture_uri("seed_examples.xml"), "-c", "test:///nonexistent/node.xml"],
        [arg for i in range(1, 9) for arg in ("-c", fixture_uri(f"rules/SNAP00{i}.xml"))],
    ],
)
def test_scan_output_validates(args):
    validate(run_cli("scan", *args, "-f", "junit", "--fail-on", "never").stdout)


def test_demo_cases_fail_exactly_where_the_gate_does():
    document = validate(run_cli("scan", "--demo", "-f", "junit").stdout)
    (suite,) = document
    outcomes = [
        (
            case.get("name"),
            case[0].tag if len(case) else "pass",
            case[0].get("type") if len(case) else None,
        )
        for case in suite.iter("testcase")
    ]
    assert outcomes == [
        ("before-spark-4", "pass", None),
        ("before-schema-migration", "failure", "SNAP001,SNAP002,SNAP017"),
        ("nightly-2025-11-24", "failure", "SNAP004"),
        ("golden-image-2014", "failure", "SNAP002"),
        (HOSTILE, "failure", "SNAP002"),
        ("lvm-root-offline", "failure", "SNAP003,SNAP005"),
        ("base-install", "pass", None),
        ("pre-upgrade", "pass", None),
        ("post-deploy", "pass", None),
    ]
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("9", "5", "0")
