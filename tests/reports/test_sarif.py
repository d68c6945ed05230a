"""SARIF 2.1.0: valid against the official schema, rules with their documentation, results
with locations, fingerprints, waivers as suppressions and the baseline state."""

from __future__ import annotations

import json
from dataclasses import replace

import jsonschema
import pytest

from auditor.engine.audit import with_rule_docs
from auditor.engine.registry import load_rules
from auditor.model import Policy, RulePolicy, Severity
from auditor.policy.fingerprint import fingerprint
from auditor.reports import render
from tests.helpers import SCHEMAS, fixture_uri, run_cli
from tests.sample_results import HOSTILE, HV1, HV2, sample_result

INSTALLED = load_rules()[0]
SCHEMA = json.loads((SCHEMAS / "sarif-schema-2.1.0.json").read_text())


def validate(document: dict) -> None:
    jsonschema.Draft4Validator(SCHEMA).validate(document)


def test_the_shipped_schema_is_the_official_one():
    assert SCHEMA["id"] == (
        "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
    )
    assert SCHEMA["$schema"] == "http://json-schema.org/draft-04/schema#"
    jsonschema.Draft4Validator.check_schema(SCHEMA)
    assert len(SCHEMA["definitions"]) == 52


@pytest.mark.parametrize(
    "args",
    [
        ["--demo"],
        ["-c", fixture_uri("seed_examples.xml"), "-c", "test:///nonexistent/node.xml"],
        [arg for i in range(1, 9) for arg in ("-c", fixture_uri(f"rules/SNAP00{i}.xml"))],
    ],
)
def test_scan_output_validates_and_matches_the_json_report(args):
    sarif = json.loads(run_cli("scan", *args, "-f", "sarif", "--fail-on", "never").stdout)
    validate(sarif)
    report = json.loads(run_cli("scan", *args, "-f", "json", "--fail-on", "never").stdout)
    (run,) = sarif["runs"]
    assert [(r["ruleId"], r["partialFingerprints"]["snapaudit/v1"]) for r in run["results"]] == [
        (f["rule"], f["fingerprint"]) for f in report["findings"]
    ]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == [p["code"] for p in report["policy"]["rules"]]
    assert all(rules[r["ruleIndex"]]["id"] == r["ruleId"] for r in run["results"])


def test_the_schema_check_is_live():
    document = json.loads(render("sarif", sample_result()))
    document["runs"][0]["results"][0]["level"] = "fatal"
    with pytest.raises(jsonschema.ValidationError):
        validate(document)


def location(fqn: str, name: str, uri: str) -> list[dict]:
    """A location on HV1, the sample's one scanned host: a path relative to its root."""
    return [
        {
            "logicalLocations": [{"name": name, "fullyQualifiedName": fqn}],
            "physicalLocation": {
                "artifactLocation": {"uri": uri.removeprefix("/"), "uriBaseId": "HOST1"},
                "region": {"startLine": 1},
            },
        }
    ]


def test_results_are_exact():
    result = sample_result()
    document = json.loads(render("sarif", result))
    validate(document)
    (run,) = document["runs"]
    prints = [fingerprint(f, "hv1.example.com") for f in result.findings]
    hostile = "%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E"
    # Host paths cannot be mapped to a repository: each host's root is a base id of its own.
    assert run["originalUriBaseIds"] == {
        "HOST1": {"uri": "file:///", "description": {"text": f"the root directory of {HV1}"}},
        "HOST2": {"uri": "file:///", "description": {"text": f"the root directory of {HV2}"}},
    }
    assert run["results"] == [
        {
            "ruleId": "SNAP001",
            "ruleIndex": 0,
            "level": "error",
            "message": {"text": "memory state is stored inside the disk image (internal snapshot)"},
            "locations": location(
                f"{HV1}/web/nightly 1",
                "nightly 1",
                "/var/lib/libvirt/qemu/snapshot/web/nightly%201.xml",
            ),
            "partialFingerprints": {"snapaudit/v1": prints[0]},
            "suppressions": [
                {
                    "kind": "external",
                    "status": "accepted",
                    "justification": "migration to external snapshots planned",
                    "properties": {
                        "owner": "ops",
                        "expires": "2026-01-31",
                        "origin": "snapaudit.toml:12",
                    },
                }
            ],
            "baselineState": "new",
        },
        {
            "ruleId": "SNAP002",
            "ruleIndex": 1,
            "level": "error",
            "message": {"text": "disk vda is captured inside its own image (internal snapshot)"},
            "locations": location(
                f"{HV1}/web/{HOSTILE}/vda",
                "vda",
                f"/var/lib/libvirt/qemu/snapshot/web/{hostile}.xml",
            ),
            "partialFingerprints": {"snapaudit/v1": prints[1]},
            "baselineState": "new",
        },
        {
            "ruleId": "SNAP006",
            "ruleIndex": 2,
            "level": "warning",
            "message": {"text": "writable disk vdb is not part of the snapshot"},
            "locations": location(
                f"{HV1}/web/{HOSTILE}/vdb",
                "vdb",
                f"/var/lib/libvirt/qemu/snapshot/web/{hostile}.xml",
            ),
            "partialFingerprints": {"snapaudit/v1": prints[2]},
            "baselineState": "unchanged",
        },
        {
            "ruleId": "SNAP011",
            "ruleIndex": 3,
            "level": "error",
            "message": {
                "text": "image /images/web.qcow2 holds internal snapshot 'old' that libvirt has"
                " no metadata for"
            },
            "locations": location(
                f"{HV1}/web//images/web.qcow2@old/vda", "vda", "/images/web.qcow2"
            ),
            "partialFingerprints": {"snapaudit/v1": prints[3]},
            "baselineState": "new",
        },
        {
            "ruleId": "ACME001",
            "ruleIndex": 6,
            "level": "warning",
            "message": {"text": "domain has no owner tag"},
            "locations": location(f"{HV1}/web", "web", "/etc/libvirt/qemu/web.xml"),
            "partialFingerprints": {"snapaudit/v1": prints[4]},
            "baselineState": "new",
        },
        {
            "ruleId": "HOST001",
            "ruleIndex": 5,
            "level": "warning",
            "message": {
                "text": "libvirt on this host cannot revert to or delete external snapshots"
            },
            "locations": location(HV1, HV1, "/etc/libvirt/"),
            "partialFingerprints": {"snapaudit/v1": prints[5]},
            "baselineState": "new",
        },
    ]
    assert run["invocations"] == [
        {
            "executionSuccessful": False,
            "endTimeUtc": "2025-11-24T16:00:00Z",
            "toolExecutionNotifications": [
                {
                    "level": "error",
                    "message": {
                        "text": f"{HV2}: not scanned: Failed to connect socket: Connection refused"
                    },
                },
                {
                    "level": "error",
                    "message": {
                        "text": f"{HV1}/db/gone: skipped: cannot read the snapshot XML: I/O error"
                    },
                },
                {
                    "level": "error",
                    "message": {
                        "text": f"rule SNAP004 error on {HV1}/web/nightly 1: raised ValueError:"
                        " bad state"
                    },
                    "associatedRule": {"id": "SNAP004"},
                },
                {
                    "level": "error",
                    "message": {
                        "text": "rule acme-broken error: failed to load acme:rule: ImportError:"
                        " no acme"
                    },
                    "associatedRule": {"id": "acme-broken"},
                },
            ],
            "toolConfigurationNotifications": [
                {
                    "level": "warning",
                    "message": {
                        "text": "expired waiver for SNAP006 (snapaudit.toml:20, expires 2025-06-30)"
                    },
                }
            ],
        }
    ]
    assert document["version"] == "2.1.0"
    assert document["$schema"] == SCHEMA["id"]


def test_without_a_baseline_results_have_no_baseline_state():
    document = json.loads(render("sarif", replace(sample_result(), baseline=None)))
    assert [("baselineState" in r) for r in document["runs"][0]["results"]] == [False] * 6


def test_rules_carry_the_effective_severity_and_their_documentation():
    # A report read back from JSON has no documentation: merge attaches the installed rules'.
    document = json.loads(render("sarif", with_rule_docs(sample_result(), INSTALLED)))
    driver = document["runs"][0]["tool"]["driver"]
    assert {k: v for k, v in driver.items() if k != "rules"} == {
        "name": "snapaudit",
        "version": "0.1.0",
        "semanticVersion": "0.1.0",
    }  # no informationUri: the project has no home page to name yet
    rules = driver["rules"]
    assert [(r["id"], r["name"], r["defaultConfiguration"]) for r in rules] == [
        ("SNAP001", "internal-memory", {"level": "error"}),
        ("SNAP002", "internal-disk", {"level": "error"}),
        ("SNAP006", "disk-excluded", {"level": "warning"}),
        ("SNAP011", "unmanaged-internal", {"level": "error"}),
        # The policy raised snapshot-age from warning to error and set its parameter.
        ("SNAP013", "snapshot-age", {"level": "error", "parameters": {"max_age_days": 30}}),
        ("HOST001", "no-external-revert", {"level": "warning"}),
        ("ACME001", "acme-domain", {"level": "warning"}),
    ]
    snap001 = rules[0]
    assert snap001["shortDescription"] == {
        "text": "The VM's memory state is stored inside its qcow2 disk image."
    }
    assert snap001["fullDescription"] == {
        "text": "The snapshot's `<memory>` element has `snapshot='internal'`: the guest's RAM and"
        " device state were saved into the disk image itself, as `virsh snapshot-create-as`"
        " does by default for a running VM on qcow2."
    }
    assert snap001["properties"] == {"tags": ["internal", "memory"]}
    # Help text is what `snapaudit explain` prints, without its heading and tags lines.
    for rule in rules[:-1]:
        explained = run_cli("explain", rule["id"]).stdout.splitlines()
        assert rule["help"]["text"] == "\n".join(explained[1:2] + explained[3:]).rstrip()
    markdown = snap001["help"]["markdown"]
    assert markdown.startswith(
        "The VM's memory state is stored inside its qcow2 disk image.\n\n## What it checks\n\n"
        "The snapshot's `<memory>` element has `snapshot='internal'`"
    )
    assert "## Noncompliant\n\n```xml\n<domainsnapshot>\n  <state>running</state>\n" in markdown
    # Outside code, what Markdown would take for HTML is escaped.
    assert "Snapshot XML format: the &lt;memory&gt; element (https://" in markdown
    # A rule that is not installed here (the report came from elsewhere) still has a descriptor.
    assert rules[-1] == {
        "id": "ACME001",
        "name": "acme-domain",
        "shortDescription": {
            "text": "acme-domain (documentation not available: the rule is not installed here)"
        },
        "fullDescription": {
            "text": "acme-domain (documentation not available: the rule is not installed here)"
        },
        "help": {
            "text": "acme-domain (documentation not available: the rule is not installed here)"
        },
        "defaultConfiguration": {"level": "warning"},
    }


def test_without_a_policy_every_installed_rule_is_described():
    document = json.loads(
        render("sarif", with_rule_docs(replace(sample_result(), policy=None), INSTALLED))
    )
    rules = document["runs"][0]["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == [r.code for r in INSTALLED] + ["ACME001"]
    levels = {"error": "error", "warning": "warning", "info": "note"}
    assert [r["defaultConfiguration"]["level"] for r in rules[:-1]] == [
        levels[r.severity.value] for r in INSTALLED
    ]
    assert [r["shortDescription"]["text"] for r in rules[:-1]] == [r.summary for r in INSTALLED]


def test_rules_are_described_from_the_result_alone():
    """The documentation is the policy's, whatever is installed; a result without a policy
    describes the rules its findings name, undocumented."""
    documented = RulePolicy(
        "SNAP001",
        "internal-memory",
        Severity.WARNING,
        {},
        summary="Documented here.",
        sections={"What it checks": "Something\nexact.", "Why": "Because."},
        tags=("t",),
    )
    result = replace(sample_result(), policy=Policy((documented,)))
    rules = json.loads(render("sarif", result))["runs"][0]["tool"]["driver"]["rules"]
    assert rules[0] == {
        "id": "SNAP001",
        "name": "internal-memory",
        "shortDescription": {"text": "Documented here."},
        "fullDescription": {"text": "Something exact."},
        "help": {
            "text": "Documented here.\n\nWhat it checks:\n  Something\n  exact."
            "\n\nWhy:\n  Because.",
            "markdown": "Documented here.\n\n## What it checks\n\nSomething\nexact."
            "\n\n## Why\n\nBecause.",
        },
        "defaultConfiguration": {"level": "warning"},
        "properties": {"tags": ["t"]},
    }
    # The rules the findings name that the policy does not list, in the findings' order.
    assert [(r["id"], r["defaultConfiguration"]["level"]) for r in rules[1:]] == [
        ("SNAP002", "error"),
        ("SNAP006", "warning"),
        ("SNAP011", "error"),
        ("ACME001", "warning"),
        ("HOST001", "warning"),
    ]
    assert all("not installed here" in r["help"]["text"] for r in rules[1:])

    bare = json.loads(render("sarif", replace(sample_result(), policy=None)))
    assert [r["id"] for r in bare["runs"][0]["tool"]["driver"]["rules"]] == [
        "SNAP001",
        "SNAP002",
        "SNAP006",
        "SNAP011",
        "ACME001",
        "HOST001",
    ]
