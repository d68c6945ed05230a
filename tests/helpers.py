"""What many tests share: where the fixtures are, fixture URIs, and running the installed
command as a user or a CI job would. Imported as `tests.helpers`; pytest's fixtures live in
conftest.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).parent
REPO = TESTS.parent
FIXTURES = TESTS / "fixtures"
SCHEMAS = TESTS / "schemas"  # third-party schemas that outputs are validated against

# The clock of CLI runs (--as-of, and SOURCE_DATE_EPOCH): a day after the fixtures' snapshots
# were taken (1700000000), so that snapshot ages are exact.
CLOCK = "1700086400"


def pinned(env: dict | None = None) -> dict:
    """The environment of a CLI run whose reports are pinned whole: the report's date and the
    clock ages are measured against are SOURCE_DATE_EPOCH (CLOCK unless ENV says)."""
    merged = {**os.environ, "SOURCE_DATE_EPOCH": CLOCK, **(env or {})}
    merged.setdefault("SNAPAUDIT_AS_OF", "@" + merged["SOURCE_DATE_EPOCH"])
    return merged


def fixture_uri(path: Path | str) -> str:
    return f"test://{(FIXTURES / path).resolve()}"


SNAPAUDIT = str(Path(sys.executable).parent / "snapaudit")
NOBODY = 65534  # the other user of the tests that need one


def needs_root() -> None:
    """A test that plants another user's files (chown) runs as root: elsewhere it is skipped,
    and in CI it fails."""
    from testlab.pytest_fixtures import require

    require(os.geteuid() == 0, "these tests plant files owned by other users: run as root")


def nobodys(path: Path) -> Path:
    """PATH (a symlink itself, not what it names) given to NOBODY."""
    os.lchown(path, NOBODY, NOBODY)
    return path


# The test suite's own `snapaudit`, with the fault points of a conversion armed from the
# environment (SNAPAUDIT_FIX_*): the installed command ignores those variables.
FAULTY_SNAPAUDIT = [sys.executable, str(TESTS / "faulty_snapaudit.py")]


def run_cli(
    *args: str, env: dict | None = None, faulty: bool = False
) -> subprocess.CompletedProcess:
    """Run the installed `snapaudit` command for real, as a user or a CI job would; FAULTY:
    the test suite's, its fault points armed by ENV."""
    return subprocess.run(**_cli(args, env, faulty), capture_output=True, timeout=120)


def start_cli(
    *args: str, env: dict | None = None, faulty: bool = False, cwd: Path | None = None
) -> subprocess.Popen:
    """run_cli, started: the caller waits for it (or stops it, or kills it)."""
    return subprocess.Popen(
        **_cli(args, env, faulty), stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd
    )


def _cli(args: tuple[str, ...], env: dict | None, faulty: bool) -> dict:
    command = FAULTY_SNAPAUDIT if faulty else [SNAPAUDIT]
    return {"args": [*command, *args], "env": pinned(env), "text": True}
