"""What the distributions install: the source distribution built offline with the system's
own setuptools, the RPM built from it with `rpmbuild -ta`, the man page and shell completion
generated from the program, the example configuration and the polkit rule."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest
import typer

from auditor.cli.app import app
from testlab.pytest_fixtures import require
from tests.helpers import REPO

PACKAGING = REPO / "packaging"
SYSTEM_PYTHON = "/usr/bin/python3"
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
BIN = Path(sys.executable).parent
DOCS = sorted((REPO / "docs").glob("*.md"))  # shipped in the sdist and as the RPM's %doc


def tool(name: str) -> str:
    found = shutil.which(name)
    require(found, f"{name} is not installed (scripts/setup.sh --test)")
    return found


def run(argv, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, **kwargs)


# --- generated files --------------------------------------------------------------------------


def test_man_page_and_completion_are_what_the_generator_writes():
    proc = run([sys.executable, str(REPO / "scripts" / "generate_packaging.py"), "--check"])
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


def rendered_man_page() -> str:
    proc = run(
        [tool("man"), "--warnings=w", "-l", str(PACKAGING / "snapaudit.1")],
        env={**os.environ, "MANWIDTH": "100", "MAN_KEEP_FORMATTING": "", "LC_ALL": "C.UTF-8"},
    )
    assert (proc.returncode, proc.stderr) == (0, "")
    return proc.stdout


def test_man_page_renders_without_warnings():
    proc = run([tool("groff"), "-man", "-ww", "-z", "-Tutf8", str(PACKAGING / "snapaudit.1")])
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    text = rendered_man_page()
    assert text.splitlines()[0].split() == ["SNAPAUDIT(1)", "User", "Commands", "SNAPAUDIT(1)"]


def test_man_page_documents_every_command_option_rule_and_exit_code():
    text = rendered_man_page()
    # Overstrike sequences, if man left any, would hide words from the checks below.
    text = re.sub(r".\x08", "", text)
    sections = re.findall(r"^([A-Z][A-Z ]+)$", text, flags=re.M)
    assert sections == [
        "NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "COMMANDS", "RULES", "EXIT STATUS",
        "ENVIRONMENT", "FILES", "EXAMPLES", "SEE ALSO",
    ]  # fmt: skip
    root = typer.main.get_command(app)
    body = text.split("\nCOMMANDS\n")[1].split("\nRULES\n")[0]
    parts = re.split(r"^   (\S+)$", body, flags=re.M)[1:]
    described = dict(zip(parts[::2], parts[1::2], strict=True))
    assert list(described) == list(root.commands)
    for name, command in root.commands.items():
        for param in command.params:
            for opt in param.opts + param.secondary_opts:
                if opt.startswith("-"):
                    assert re.search(rf"(^|\s){re.escape(opt)}(\s|,|$)", described[name]), opt
    listed = run([str(BIN / "snapaudit"), "rules"])
    codes = [line.split()[0] for line in listed.stdout.splitlines()]
    rules = text.split("\nRULES\n")[1].split("\nEXIT STATUS\n")[0]
    assert re.findall(r"^       ([A-Z]+\d{3}) ", rules, flags=re.M) == codes
    exits = text.split("\nEXIT STATUS\n")[1].split("\nENVIRONMENT\n")[0]
    assert re.findall(r"^       (\d+) ", exits, flags=re.M) == ["0", "1", "2", "3", "130", "143"]
    assert "a host, snapshot or rule could not be audited" in " ".join(exits.split())
    assert "stopped by SIGINT (Ctrl-C)" in " ".join(exits.split())
    environment = text.split("\nENVIRONMENT\n")[1].split("\nFILES\n")[0]
    assert re.findall(r"^       ([A-Z_]+)$", environment, flags=re.M) == [
        "SNAPAUDIT_AS_OF", "SNAPAUDIT_STATE_DIR", "LIBVIRT_DEFAULT_URI", "SOURCE_DATE_EPOCH",
        "NO_COLOR",
    ]  # fmt: skip
    files = text.split("\nFILES\n")[1].split("\nEXAMPLES\n")[0]
    assert re.findall(r"^       (\S+)$", files, flags=re.M) == [
        "./snapaudit.toml", "/etc/snapaudit/config.toml", "/var/lib/snapaudit/fix",
        "/run/snapaudit/fix",
    ]  # fmt: skip
    examples = text.split("\nEXAMPLES\n")[1].split("\nSEE ALSO\n")[0]
    typed = re.findall(r"^              (snapaudit \w+)", examples, flags=re.M)
    assert {command.split()[1] for command in typed} == {"scan", "diff", "collect", "fix"}


def test_bash_completion_completes_commands_and_choices():
    bash = tool("bash")
    script = PACKAGING / "completion" / "snapaudit"
    probe = (
        f"source {script}\n"
        'COMP_WORDS=(snapaudit "$1"); COMP_CWORD=1; _snapaudit_completion snapaudit\n'
        'echo "${COMPREPLY[*]}"\n'
        'COMP_WORDS=(snapaudit scan --fail-on ""); COMP_CWORD=3; _snapaudit_completion snapaudit\n'
        'echo "${COMPREPLY[*]}"\n'
    )
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    proc = run([bash, "-c", probe, "bash", "s"], env=env)
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        0,
        "scan\nerror warning info never\n",
        "",
    )


def test_zsh_completion_is_valid_and_answers():
    zsh = tool("zsh")
    script = PACKAGING / "completion" / "_snapaudit"
    assert script.read_text().startswith("#compdef snapaudit\n")
    proc = run([zsh, "-n", str(script)])
    assert (proc.returncode, proc.stderr) == (0, "")
    # What the script's function asks the program, with zsh's words.
    proc = run(
        [str(BIN / "snapaudit")],
        env={
            **os.environ,
            "_SNAPAUDIT_COMPLETE": "complete_zsh",
            "_TYPER_COMPLETE_ARGS": "snapaudit ex",
        },
    )
    assert proc.returncode == 0 and '"explain":"Explain a rule' in proc.stdout


# --- configuration, polkit --------------------------------------------------------------------


def test_example_configuration_changes_nothing_and_its_examples_are_valid(tmp_path):
    snapaudit = str(BIN / "snapaudit")
    shipped = PACKAGING / "config.toml"
    default = run([snapaudit, "config", "--show"], cwd=tmp_path)
    with_file = run([snapaudit, "config", "--show", "--config", str(shipped)], cwd=tmp_path)
    assert (default.returncode, with_file.returncode) == (0, 0)
    assert default.stdout.replace(
        "# configuration files: none", f"# configuration files: {shipped}"
    ) == (with_file.stdout)
    # Every commented-out setting, switched on, is a valid configuration.
    settings = re.findall(r"^#([^\s#].*)$", shipped.read_text(), flags=re.M)
    assert len(settings) >= 20
    (tmp_path / "all.toml").write_text("\n".join(settings) + "\n")
    proc = run([snapaudit, "config", "--config", str(tmp_path / "all.toml")], cwd=tmp_path)
    assert (proc.returncode, proc.stderr) == (0, "")


def test_polkit_rule_grants_only_read_only_access_to_the_snapaudit_user():
    text = (PACKAGING / "polkit" / "50-snapaudit.rules").read_text()
    code = "\n".join(line for line in text.splitlines() if not line.startswith("//"))
    assert 'subject.user !== "snapaudit"' in code
    assert '"org.libvirt.unix.monitor"' in code
    assert "manage" not in code and "write" not in code
    granted = re.findall(r"org\\\.libvirt\\\.api\\\.\((.*)\)\$/", code)
    assert granted == ["connect\\.(getattr|read|search-domains)|domain\\.(getattr|read)"]
    node = shutil.which("node")
    if node:  # optional: a JavaScript syntax check where node is installed
        assert run([node, "--check", "-"], input=code).returncode == 0


# --- sdist, wheel and RPM built offline with the system's tools -------------------------------


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    """sdist and wheel built by the distribution's Python, setuptools and build, offline."""
    require(
        run([SYSTEM_PYTHON, "-c", "import build, setuptools, wheel"]).returncode == 0
        if Path(SYSTEM_PYTHON).exists()
        else False,
        "the system Python lacks build, setuptools or wheel (scripts/setup.sh --test)",
    )
    out = tmp_path_factory.mktemp("dist")
    source = tmp_path_factory.mktemp("src") / "snapaudit"
    # A clean copy: the build must not depend on a development tree's leftovers.
    shutil.copytree(
        REPO,
        source,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "*.egg-info", "build", "dist", "__pycache__", ".*_cache"
        ),
    )
    offline = {**os.environ, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "", "no_proxy": "*"}
    offline.update({"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"})
    proc = run(
        [SYSTEM_PYTHON, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)],
        env=offline,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out / f"snapaudit-{VERSION}.tar.gz", out / f"snapaudit-{VERSION}-py3-none-any.whl"


def test_system_setuptools_is_old_enough_to_matter():
    # The point of the test below: the build requirement admits the distribution's setuptools.
    proc = run([SYSTEM_PYTHON, "-c", "import setuptools; print(setuptools.__version__)"])
    require(proc.returncode == 0, "the system Python has no setuptools")
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]
    assert requires == ["setuptools>=66.1"]
    installed = tuple(int(p) for p in proc.stdout.strip().split(".")[:2])
    assert installed >= (66, 1)


def test_sdist_ships_what_rpmbuild_needs(dists):
    sdist, _ = dists
    with tarfile.open(sdist) as archive:
        names = set(archive.getnames())
    top = f"snapaudit-{VERSION}"
    for path in (
        "packaging/snapaudit.spec",
        "packaging/snapaudit.1",
        "packaging/completion/snapaudit",
        "packaging/completion/_snapaudit",
        "packaging/snapaudit.sysusers",
        "packaging/config.toml",
        "packaging/polkit/50-snapaudit.rules",
        "examples/systemd/snapaudit.service",
        "examples/systemd/snapaudit.timer",
        "rules/internal_memory.py",
        "tests/conftest.py",
        "testlab/pytest_fixtures.py",
        "README.md",
        "CONTRIBUTING.md",
        *(f"docs/{page.name}" for page in DOCS),
    ):
        assert f"{top}/{path}" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_wheel_metadata_and_data_files(dists):
    _, wheel = dists
    archive = zipfile.ZipFile(wheel)
    data = f"snapaudit-{VERSION}.data/data/share"
    for path in ("man/man1/snapaudit.1", "bash-completion/completions/snapaudit"):
        assert (
            archive.read(f"{data}/{path}")
            == (
                PACKAGING / ("snapaudit.1" if "man" in path else "completion/snapaudit")
            ).read_bytes()
        )
    assert f"{data}/zsh/site-functions/_snapaudit" in archive.namelist()
    metadata = archive.read(f"snapaudit-{VERSION}.dist-info/METADATA").decode()
    assert "License: MIT" in metadata.splitlines()
    # Old setuptools writes "lxml (>=4.9)", newer "lxml>=4.9".
    requires = sorted(
        re.sub(r"[ ()]", "", line.split(":", 1)[1])
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist")
    )
    assert [r for r in requires if "extra==" not in r] == [
        "jinja2>=3.1",
        "libvirt-python>=9.0",
        "lxml>=4.9",
        "rich>=13.0",
        "typer>=0.12",
    ]


@pytest.fixture(scope="module")
def rpm_package(dists, tmp_path_factory):
    """`rpmbuild -ta` on the sdist. Outside the Fedora family no RPM database knows the build
    dependencies (--nodeps) and %check's are not installed as RPMs (--nocheck)."""
    sdist, _ = dists
    rpmbuild = tool("rpmbuild")
    top = tmp_path_factory.mktemp("rpmbuild")
    proc = run([rpmbuild, "-ta", "--nodeps", "--nocheck", "--define", f"_topdir {top}", str(sdist)])
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    (package,) = (top / "RPMS" / "noarch").glob("snapaudit-*.noarch.rpm")
    return package


def rpm_query(package: Path, *args: str) -> list[str]:
    proc = run([tool("rpm"), "-qp", *args, str(package)])
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


DIST_INFO = ("", "/INSTALLER", "/METADATA", "/WHEEL", "/entry_points.txt", "/top_level.txt")


def test_rpm_file_list(rpm_package):
    files = rpm_query(rpm_package, "-l")
    sitelib = next(f for f in files if f.endswith("/auditor"))
    assert re.fullmatch(r"/usr/lib/python3\.\d+/site-packages/auditor", sitelib)
    outside = sorted(f for f in files if not f.startswith(sitelib))
    # Compressed where the distribution's rpm macros compress man pages.
    man_page = next(f for f in files if f.startswith("/usr/share/man/man1/snapaudit.1"))
    assert man_page in ("/usr/share/man/man1/snapaudit.1", "/usr/share/man/man1/snapaudit.1.gz")
    assert outside == [
        "/etc/snapaudit",
        "/etc/snapaudit/config.toml",
        "/usr/bin/snapaudit",
        *(
            sitelib.replace("auditor", f"snapaudit-{VERSION}.dist-info{name}")
            for name in DIST_INFO
        ),
        "/usr/lib/systemd/system/snapaudit.service",
        "/usr/lib/systemd/system/snapaudit.timer",
        "/usr/lib/sysusers.d/snapaudit.conf",
        "/usr/share/bash-completion/completions/snapaudit",
        f"/usr/share/doc/snapaudit-{VERSION}",
        f"/usr/share/doc/snapaudit-{VERSION}/50-snapaudit.rules",
        f"/usr/share/doc/snapaudit-{VERSION}/README.md",
        f"/usr/share/doc/snapaudit-{VERSION}/ansible",
        f"/usr/share/doc/snapaudit-{VERSION}/ansible/inventory.ini",
        f"/usr/share/doc/snapaudit-{VERSION}/ansible/snapaudit-collect.yml",
        f"/usr/share/doc/snapaudit-{VERSION}/ansible/snapaudit-fleet.yml",
        f"/usr/share/doc/snapaudit-{VERSION}/docs",
        *(f"/usr/share/doc/snapaudit-{VERSION}/docs/{page.name}" for page in DOCS),
        man_page,
        "/usr/share/zsh/site-functions/_snapaudit",
    ]  # fmt: skip
    python = {f.removeprefix(sitelib + "/") for f in files if f.startswith(sitelib + "/")}
    for module in (REPO / "rules").glob("*.py"):
        assert f"rules/{module.name}" in python
    for module in ("cli/app.py", "reports/templates/report.html.j2", "sources/demo/demo-host.xml"):
        assert module in python
    assert rpm_query(rpm_package, "-c") == ["/etc/snapaudit/config.toml"]


def test_rpm_requirements(rpm_package):
    requires = set(rpm_query(rpm_package, "-R"))
    for name in (
        "python3-libvirt",
        "python3-lxml",
        "python3-jinja2",
        "python3-typer",
        "python3-rich",
    ):
        assert name in requires
    assert rpm_query(rpm_package, "--recommends") == ["qemu-img"]
    info = dict(
        line.split(":", 1) for line in rpm_query(rpm_package, "--queryformat", "%{VERSION}:%{ARCH}")
    )
    assert info == {VERSION: "noarch"}


def test_rpm_creates_the_system_user_as_sysusers_says(rpm_package):
    sysusers = (PACKAGING / "snapaudit.sysusers").read_text().strip()
    assert sysusers.startswith("u snapaudit ")
    scripts = "\n".join(rpm_query(rpm_package, "--scripts"))
    assert f"echo '{sysusers}'" in scripts
    assert "systemd-sysusers --replace=/usr/lib/sysusers.d/snapaudit.conf -" in scripts


def test_spec_version_is_the_package_version():
    spec = (PACKAGING / "snapaudit.spec").read_text()
    assert re.search(r"^Version:\s+(\S+)$", spec, flags=re.M).group(1) == VERSION
