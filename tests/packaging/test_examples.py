"""The shipped examples work as shipped: systemd units that systemd accepts, CI jobs and an
Ansible playbook whose snapaudit commands run, against test-driver hosts in place of
qemu:///system."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from lxml import etree

from auditor.reports.loader import load_report
from testlab.pytest_fixtures import require
from tests.helpers import CLOCK, REPO, SCHEMAS, fixture_uri

EXAMPLES = REPO / "examples"
BIN = Path(sys.executable).parent
SNAPAUDIT = str(BIN / "snapaudit")
SEED = fixture_uri("seed_examples.xml")  # error findings
CLEAN = fixture_uri("clean_host.xml")  # none


def tool(name: str, where: Path | None = None) -> str:
    """A command the test needs; missing, it skips the test, except in CI where it fails."""
    found = shutil.which(name, path=str(where) if where else None)
    require(found, f"{name} is not installed")
    return found


def run(argv_or_script, cwd: Path, shell: bool = False) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "SOURCE_DATE_EPOCH": CLOCK,
        "SNAPAUDIT_AS_OF": f"@{CLOCK}",
        # Ansible's working files stay in the test's directory, not in ~/.ansible.
        "ANSIBLE_LOCAL_TEMP": str(cwd / ".ansible-local"),
        "ANSIBLE_REMOTE_TEMP": str(cwd / ".ansible-remote"),
    }
    argv = ["bash", "-euc", argv_or_script] if shell else argv_or_script
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


# --- systemd ----------------------------------------------------------------------------------


def unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A unit file's sections and settings, continuation lines joined as systemd does."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    logical = path.read_text().replace("\\\n", " ")
    for line in logical.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
        else:
            key, _, value = line.partition("=")
            current.setdefault(key.strip(), []).append(" ".join(value.split()))
    return sections


def test_systemd_accepts_the_units(tmp_path):
    analyze = tool("systemd-analyze")
    for name in ("snapaudit.service", "snapaudit.timer"):
        text = (EXAMPLES / "systemd" / name).read_text()
        # verify checks that ExecStart's program exists: use the one under test.
        (tmp_path / name).write_text(text.replace("/usr/bin/snapaudit", SNAPAUDIT))
    # verify also checks that Documentation=man:snapaudit(1) opens: the shipped man page.
    (tmp_path / "man" / "man1").mkdir(parents=True)
    shutil.copy(REPO / "packaging" / "snapaudit.1", tmp_path / "man" / "man1")
    proc = subprocess.run(
        [analyze, "verify", str(tmp_path / "snapaudit.timer"), str(tmp_path / "snapaudit.service")],
        env={**os.environ, "MANPATH": str(tmp_path / "man")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (proc.returncode, proc.stderr) == (0, "")


# The stated bar for the shipped unit: systemd's overall exposure score at most 1.0 ("SAFE";
# 10 is an unsandboxed service; --threshold counts in tenths). The unit scores 0.5 as shipped.
EXPOSURE_THRESHOLD = 1.0


def test_service_is_hardened_for_a_read_only_scan():
    analyze = tool("systemd-analyze")
    path = EXAMPLES / "systemd" / "snapaudit.service"
    proc = subprocess.run(
        [
            analyze,
            "security",
            "--offline=yes",
            f"--threshold={round(EXPOSURE_THRESHOLD * 10)}",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (score,) = re.findall(r"Overall exposure level for snapaudit.service: (\d+\.\d)", proc.stdout)
    assert float(score) <= EXPOSURE_THRESHOLD
    service = unit(path)["Service"]
    assert (service["User"], service["Group"]) == (["snapaudit"], ["snapaudit"])
    for setting, value in {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "",
        "RestrictAddressFamilies": "AF_UNIX",
        "PrivateNetwork": "yes",
    }.items():
        assert service[setting] == [value], setting


def test_timer_runs_the_service_nightly_and_catches_up():
    timer = unit(EXAMPLES / "systemd" / "snapaudit.timer")
    assert timer["Timer"] == {
        "OnCalendar": ["*-*-* 02:30:00"],
        "RandomizedDelaySec": ["30min"],
        "Persistent": ["true"],
    }
    assert timer["Install"] == {"WantedBy": ["timers.target"]}


def test_service_writes_the_reports_and_metrics(tmp_path):
    service = unit(EXAMPLES / "systemd" / "snapaudit.service")
    assert service["Service"]["Type"] == ["oneshot"]
    (command,) = service["Service"]["ExecStart"]
    argv = shlex.split(command)
    assert argv[:4] == ["/usr/bin/snapaudit", "scan", "-c", "qemu:///system"]
    outputs = {}
    for i, arg in enumerate(argv):
        if argv[i - 1] == "--format":
            name, _, path = arg.partition(":")
            outputs[name] = Path(path)
            argv[i] = f"{name}:{tmp_path / Path(path).name}"
    assert outputs == {
        "json": Path("/var/lib/snapaudit/report.json"),
        "html": Path("/var/lib/snapaudit/report.html"),
        "prometheus": Path("/var/lib/snapaudit/snapaudit.prom"),
    }
    # Reports land in the unit's state directory, the one place it may write.
    assert service["Service"]["StateDirectory"] == ["snapaudit"]
    assert service["Service"]["ReadWritePaths"] == ["/var/lib/snapaudit"]
    proc = run([SNAPAUDIT, *argv[1:3], SEED, *argv[4:]], tmp_path)
    # Findings do not fail the unit; only what could not be audited would (exit 3).
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    assert [f.rule for f in load_report(tmp_path / "report.json").findings] == [
        "SNAP001",
        "SNAP002",
        "SNAP013",
        "SNAP017",
    ]
    assert "<!DOCTYPE html>" in (tmp_path / "report.html").read_text()
    metrics = (tmp_path / "snapaudit.prom").read_text()
    assert f'snapaudit_scan_success{{host="{SEED}"}} 1\n' in metrics


# --- CI jobs ----------------------------------------------------------------------------------


def scan_commands(commands: list[str]) -> list[str]:
    scans = [c for c in commands if c.startswith("snapaudit scan")]
    assert len(scans) == 1
    return scans


def test_github_actions_job_gates_and_uploads_sarif(tmp_path):
    workflow = yaml.safe_load((EXAMPLES / "ci" / "github-actions.yml").read_text())
    assert workflow[True] == {"schedule": [{"cron": "30 2 * * *"}], "workflow_dispatch": None}
    assert workflow["permissions"] == {"contents": "read", "security-events": "write"}
    steps = workflow["jobs"]["audit"]["steps"]
    (scan,) = scan_commands([s.get("run", "") for s in steps])
    argv = shlex.split(scan)
    assert argv[argv.index("--fail-on") + 1] == "error"
    (sarif_file,) = [a.split(":", 1)[1] for a in argv if a.startswith("sarif:")]
    upload = steps[-1]
    assert upload["uses"] == "github/codeql-action/upload-sarif@v3"
    assert upload["with"] == {"sarif_file": sarif_file, "category": "snapaudit"}
    assert upload["if"] == "${{ !cancelled() }}"  # after a failed gate too

    schema = json.loads((SCHEMAS / "sarif-schema-2.1.0.json").read_text())
    for uri, code in ((SEED, 1), (CLEAN, 0), ("test:///nonexistent/node.xml", 3)):
        (tmp_path / sarif_file).unlink(missing_ok=True)
        proc = run(scan.replace("qemu:///system", uri), tmp_path, shell=True)
        assert proc.returncode == code, proc.stderr
        sarif = json.loads((tmp_path / sarif_file).read_text())
        jsonschema.Draft4Validator(schema).validate(sarif)
        results = sarif["runs"][0]["results"]
        assert [r["ruleId"] for r in results] == (
            ["SNAP001", "SNAP002", "SNAP013", "SNAP017"] if uri == SEED else []
        )


def test_gitlab_job_gates_and_reports_junit(tmp_path):
    pipeline = yaml.safe_load((EXAMPLES / "ci" / "gitlab-ci.yml").read_text())
    job = pipeline["snapshot-compliance"]
    (scan,) = scan_commands(job["script"])
    argv = shlex.split(scan)
    assert argv[argv.index("--fail-on") + 1] == "error"
    files = dict(a.split(":", 1) for a in argv if ":" in a and not a.startswith("qemu"))
    assert job["artifacts"] == {
        "when": "always",
        "paths": [files["sarif"], files["html"]],
        "reports": {"junit": files["junit"]},
    }
    junit = etree.XMLSchema(etree.parse(str(SCHEMAS / "junit.xsd")))
    for uri, code, failures in ((SEED, 1, "1"), (CLEAN, 0, "0")):
        proc = run(scan.replace("qemu:///system", uri), tmp_path, shell=True)
        assert proc.returncode == code, proc.stderr
        document = etree.parse(str(tmp_path / files["junit"]))
        junit.assertValid(document)
        assert document.getroot()[0].get("failures") == failures


# --- Ansible ----------------------------------------------------------------------------------


def test_playbook_structure():
    (play,) = yaml.safe_load((EXAMPLES / "ansible" / "snapaudit-fleet.yml").read_text())
    assert (play["hosts"], play["become"]) == ("hypervisors", True)
    rpm, pip, scan, fetch, merge = play["tasks"]
    assert rpm["ansible.builtin.dnf"] == {
        "name": "{{ snapaudit_package | default('snapaudit') }}",
        "state": "present",
    }
    assert (rpm["when"], pip["when"]) == ("install == 'rpm'", "install == 'pip'")
    assert pip["ansible.builtin.pip"]["extra_args"] == "--only-binary=:all:"
    assert pip["ansible.builtin.pip"]["virtualenv_command"].endswith(
        " -m venv --system-site-packages"
    )
    assert scan["ansible.builtin.command"]["argv"][1:3] == ["scan", "-c"]
    assert scan["failed_when"] == "snapaudit_scan.rc not in [0, 3]"
    assert fetch["ansible.builtin.fetch"]["flat"] is True
    assert (merge["delegate_to"], merge["run_once"]) == ("localhost", True)
    assert merge["loop"] == [
        {"format": "json", "file": "fleet.json"},
        {"format": "html", "file": "fleet.html"},
    ]


def test_playbook_syntax():
    playbook = tool("ansible-playbook", BIN)
    proc = subprocess.run(
        [
            playbook,
            "--syntax-check",
            "-i",
            str(EXAMPLES / "ansible" / "inventory.ini"),
            str(EXAMPLES / "ansible" / "snapaudit-fleet.yml"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(REPO)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (built,) = out.glob("snapaudit-*.whl")
    return built


def test_playbook_installs_audits_two_hypervisors_and_merges_their_reports(tmp_path, wheel):
    playbook = tool("ansible-playbook", BIN)
    system_python = "/usr/bin/python3"
    require(
        subprocess.run([system_python, "-c", "import libvirt, lxml, venv"]).returncode == 0,
        "the system Python lacks python3-libvirt, python3-lxml or venv (scripts/setup.sh --test)",
    )
    # Two "hypervisors" on this machine over a local connection, each auditing a test host.
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(
        "[hypervisors]\n"
        f"hv1 ansible_connection=local snapaudit_uri={SEED}"
        f" snapaudit_remote_report={tmp_path}/hv1-remote.json\n"
        f"hv2 ansible_connection=local snapaudit_uri={CLEAN}"
        f" snapaudit_remote_report={tmp_path}/hv2-remote.json\n"
    )
    extra = {
        "ansible_become": False,  # already root here; no sudo in the test
        "ansible_python_interpreter": sys.executable,
        # The pip path on the hypervisors: the built wheel into a venv of the system's Python.
        "snapaudit_install": "pip",
        "snapaudit_package": str(wheel),
        "snapaudit_venv": str(tmp_path / "venv"),
        "snapaudit_python": system_python,
        "snapaudit_local_bin": SNAPAUDIT,
        "snapaudit_report_dir": str(tmp_path / "reports"),
    }
    proc = run(
        [
            playbook,
            # Both "hypervisors" are this machine and share one venv path: one at a time.
            "--forks",
            "1",
            "-i",
            str(inventory),
            "-e",
            json.dumps(extra),
            str(EXAMPLES / "ansible" / "snapaudit-fleet.yml"),
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "venv" / "bin" / "snapaudit").exists()
    reports = tmp_path / "reports"
    assert sorted(p.name for p in reports.iterdir()) == [
        "fleet.html",
        "fleet.json",
        "hv1.json",
        "hv2.json",
    ]
    fleet = json.loads((reports / "fleet.json").read_text())
    assert sorted(h["uri"] for h in fleet["hosts"]) == sorted([SEED, CLEAN])
    assert fleet["summary"]["hosts"] == 2
    assert sorted(f["rule"] for f in fleet["findings"]) == [
        "SNAP001",
        "SNAP002",
        "SNAP013",
        "SNAP017",
    ]


def test_collect_playbook_structure():
    path = EXAMPLES / "ansible" / "snapaudit-collect.yml"
    (play,) = yaml.safe_load(path.read_text())
    assert (play["hosts"], play["become"]) == ("hypervisors", True)
    rpm, pip, collect, fetch, mkdir, audit = play["tasks"]
    assert (rpm["when"], pip["when"]) == ("install == 'rpm'", "install == 'pip'")
    assert collect["ansible.builtin.command"]["argv"][1:5] == [
        "collect",
        "-c",
        "{{ snapaudit_uri | default('qemu:///system') }}",
        "-o",
    ]
    assert collect["failed_when"] == "snapaudit_collect.rc not in [0, 3]"
    assert fetch["ansible.builtin.fetch"]["flat"] is True
    for task in (mkdir, audit):
        assert (task["delegate_to"], task["run_once"], task["become"]) == ("localhost", True, False)
    assert audit["failed_when"] == "snapaudit_audit.rc not in [0, 3]"


def test_collect_playbook_syntax():
    playbook = tool("ansible-playbook", BIN)
    proc = subprocess.run(
        [
            playbook,
            "--syntax-check",
            "-i",
            str(EXAMPLES / "ansible" / "inventory.ini"),
            str(EXAMPLES / "ansible" / "snapaudit-collect.yml"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr


def test_collect_playbook_keeps_bundles_that_a_later_audit_reads_with_another_policy(tmp_path):
    playbook = tool("ansible-playbook", BIN)
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(
        "[hypervisors]\n"
        f"hv1 ansible_connection=local snapaudit_uri={SEED}"
        f" snapaudit_remote_bundle={tmp_path}/hv1-remote.tar.gz\n"
        f"hv2 ansible_connection=local snapaudit_uri={CLEAN}"
        f" snapaudit_remote_bundle={tmp_path}/hv2-remote.tar.gz\n"
    )
    policy = tmp_path / "site.toml"
    policy.write_text("ignore = ['SNAP013']\n")
    extra = {
        "ansible_become": False,  # already root here; no sudo in the test
        "ansible_python_interpreter": sys.executable,
        "snapaudit_install": "none",  # installing is the fleet playbook's test
        "snapaudit_bin": SNAPAUDIT,
        "snapaudit_local_bin": SNAPAUDIT,
        "snapaudit_bundle_dir": str(tmp_path / "bundles"),
        "snapaudit_report_dir": str(tmp_path / "reports"),
        "snapaudit_config": str(policy),
    }
    proc = run(
        [
            playbook,
            "-i",
            str(inventory),
            "-e",
            json.dumps(extra),
            str(EXAMPLES / "ansible" / "snapaudit-collect.yml"),
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    bundles = sorted((tmp_path / "bundles").iterdir())
    assert [p.name for p in bundles] == ["hv1.snapaudit.tar.gz", "hv2.snapaudit.tar.gz"]
    fleet = json.loads((tmp_path / "reports" / "fleet.json").read_text())
    assert [h["uri"] for h in fleet["hosts"]] == [SEED, CLEAN]
    assert sorted(f["rule"] for f in fleet["findings"]) == ["SNAP001", "SNAP002", "SNAP017"]
    assert (tmp_path / "reports" / "fleet.html").exists()
    # Later, elsewhere, under the default policy: the bundles are all it needs.
    again = run([SNAPAUDIT, "scan", *(f"--from={p}" for p in bundles), "-f", "json"], tmp_path)
    assert again.returncode == 1, again.stderr
    rules = sorted(f["rule"] for f in json.loads(again.stdout)["findings"])
    assert rules == ["SNAP001", "SNAP002", "SNAP013", "SNAP017"]
