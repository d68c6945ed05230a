"""Strings from hosts and from report files reach the terminal escaped: no OSC, clear-screen
or other control sequence, and no bidi control that would reorder what a line shows."""

from __future__ import annotations

import json
from pathlib import Path

from auditor.display import clean
from tests.helpers import FIXTURES, fixture_uri, run_cli

SEED = fixture_uri("seed_examples.xml")
OSC = "\x1b]0;pwned\x07"  # sets the terminal's title
CLEAR = "\x1b[2J\x1b[H"  # clears the screen
BIDI = "\u202e\u2066"  # right-to-left override, left-to-right isolate
HOST = f"test:///{BIDI}evil{OSC}"
HOST_SHOWN = "test:///\\u202e\\u2066evil\\x1b]0;pwned\\x07"
RULE = f"SNAP001{CLEAR}"
RULE_SHOWN = "SNAP001\\x1b[2J\\x1b[H"


def test_clean_escapes_c0_c1_and_bidi_controls_and_nothing_else():
    assert clean("a\x00\x1b\x7f\x85\x9fz") == "a\\x00\\x1b\\x7f\\x85\\x9fz"
    bidi = "".join(chr(c) for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)])
    assert clean(bidi) == ("\\u202a\\u202b\\u202c\\u202d\\u202e\\u2066\\u2067\\u2068\\u2069")
    assert clean("é ü 名前 \u200d \u2029 \u2065 \u206a") == "é ü 名前 \u200d \u2029 \u2065 \u206a"


def hostile_report(tmp_path: Path) -> Path:
    """A real report whose host URI, rule ids, rule error and waiver carry escapes."""
    config = tmp_path / "w.toml"
    config.write_text(
        '[[waivers]]\nrule = "SNAP001"\nreason = "r"\nowner = "o"\nexpires = 2020-01-01\n'
    )
    proc = run_cli("scan", "-c", SEED, "--config", str(config), "-f", "json")
    document = json.loads(proc.stdout.replace(json.dumps(SEED), json.dumps(HOST)))
    for finding in document["findings"]:
        finding["rule"] = RULE if finding["rule"] == "SNAP001" else finding["rule"]
    document["rule_errors"] = [
        {"rule": f"acme{OSC}", "message": "raised", "host": None, "domain": None, "snapshot": None}
    ]
    document["waivers"][0]["rule"] = f"SNAP001{BIDI}"
    document["waivers"][0]["owner"] = f"o{CLEAR}"  # the status must be one the schema knows
    path = tmp_path / "hostile.json"
    path.write_text(json.dumps(document))
    return path


def test_diff_escapes_strings_read_from_reports(tmp_path):
    new = hostile_report(tmp_path)
    document = json.loads(new.read_text())
    document["findings"] = []
    old = tmp_path / "old.json"
    old.write_text(json.dumps(document))
    proc = run_cli("diff", str(old), str(new))
    assert proc.stdout.splitlines() == [
        f"new         {HOST_SHOWN}  vm-name/sample-snapshot-name-2  {RULE_SHOWN} error"
        "  memory state is stored inside the disk image (internal snapshot)",
        f"new         {HOST_SHOWN}  vm-name/sample-snapshot-name-2 [vda]  SNAP002 error"
        "  disk vda is captured inside its own image (internal snapshot)",
        f"new         {HOST_SHOWN}  vm-name/sample-snapshot-name-2  SNAP013 warning"
        "  snapshot is 540 days old (limit: 30 days)",
        f"new         {HOST_SHOWN}  vm-name/sample-snapshot-name-2  SNAP017 error"
        "  mixed snapshot tree: 1 internal snapshot and 1 external; libvirt refuses to delete"
        " an external snapshot whose parent is internal (older libvirt deleted the base image),"
        " and a revert across kinds strands overlays",
        "4 new, 0 fixed, 0 unchanged, 0 unverified (not audited in the new report)",
    ]


def test_merge_text_escapes_strings_read_from_reports(tmp_path):
    proc = run_cli("merge", "-f", "text", str(hostile_report(tmp_path)))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == (
        f"{HOST_SHOWN}  vm-name/sample-snapshot-name-2  {RULE_SHOWN} error    memory state is"
        " stored inside the disk image (internal snapshot)"
    )
    assert lines[4:6] == [
        "rule acme\\x1b]0;pwned\\x07 error: raised",
        "expired waiver: SNAP001\\u202e\\u2066 host=* domain=* snapshot=*"
        f" (expires 2020-01-01, o\\x1b[2J\\x1b[H, {tmp_path / 'w.toml'}:1): matched 1",
    ]
    assert not any(c in proc.stdout for c in "\x1b\x07\u202e\u2066")


def test_scan_escapes_bidi_controls_in_names_from_the_host(tmp_path):
    text = (FIXTURES / "seed_examples.xml").read_text()
    node = tmp_path / "node.xml"
    node.write_text(text.replace("<name>vm-name</name>", "<name>vm\u202eeman</name>", 1))
    proc = run_cli("scan", "-c", f"test://{node}", "--select", "SNAP001")
    assert proc.stdout.splitlines()[0].split()[1] == "vm\\u202eeman/sample-snapshot-name-2"
    assert "\u202e" not in proc.stdout
