"""The package layout shows the pipeline: each stage imports only the model, the shared
helpers and the stages data has passed through before it reaches it."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).parent.parent
AUDITOR = REPO / "auditor"
BASE = {"__init__", "model", "display", "inputs", "errors"}

# What each part of the package may import, besides BASE.
ALLOWED = {
    "__init__": set(),
    "model": set(),
    "display": set(),
    "inputs": {"safefs"},  # files are opened through safefs.chase, as they are written
    "errors": set(),
    "stopping": set(),
    "rule": set(),
    "safefs": set(),
    # QEMU's images, read natively or through its tools: for the file checks and for fix.
    "images": {"stopping"},
    "sources": {"images", "safefs", "stopping"},
    "engine": {"rule"},
    "policy": {"rule", "engine", "safefs"},
    "fix": {"sources", "images", "safefs", "stopping"},
    # Reports render results and fix plans; they never read a host or look up rules.
    "reports": {"rule", "policy", "fix", "safefs"},
    "pipeline": {"rule", "sources", "engine", "policy", "reports"},
    "cli": {
        *("rule", "sources", "engine", "policy", "reports", "fix", "pipeline", "safefs"),
        *("images", "stopping"),
    },
    "rules": {"rule"},
}


def _runtime_imports(path: Path) -> set[str]:
    """Top-level auditor parts imported by PATH, leaving out `if TYPE_CHECKING:` blocks."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
    parts = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "auditor":  # `from auditor import __version__` is the package
                names = [f"auditor.{a.name}" for a in node.names if a.name != "__version__"]
        parts.update(n.split(".")[1] for n in names if n.startswith("auditor."))
    return parts


def _part(path: Path) -> str:
    if path.is_relative_to(REPO / "rules"):
        return "rules"
    relative = path.relative_to(AUDITOR)
    return relative.parts[0].removesuffix(".py")


def _sources() -> list[Path]:
    return sorted([*AUDITOR.rglob("*.py"), *(REPO / "rules").glob("*.py")])


def test_no_stage_imports_a_later_one():
    wrong = []
    for path in _sources():
        part = _part(path)
        allowed = ALLOWED[part] | BASE | {part}
        for imported in sorted(_runtime_imports(path) - allowed):
            wrong.append(f"{path.relative_to(REPO)} imports auditor.{imported}")
    assert wrong == []


def test_every_part_is_known():
    assert {_part(p) for p in _sources()} <= set(ALLOWED) | {"__init__"}


def test_the_top_level_stays_small():
    modules = sorted(p.name for p in AUDITOR.glob("*.py"))
    assert len(modules) <= 8, modules


def test_no_source_module_is_over_350_lines():
    long = {
        str(p.relative_to(REPO)): n
        for p in _sources()
        if (n := len(p.read_text().splitlines())) > 350
    }
    assert long == {}


def test_the_planner_reads_facts_without_libvirt():
    # Plain data in, plan out: planning needs no connection, so it is tested without one.
    import subprocess
    import sys

    code = "import sys, auditor.fix.planner; assert 'libvirt' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
