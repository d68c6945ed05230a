#!/usr/bin/env bash
# Sets up everything (scripts/setup.sh --test: with the packaging tests' system packages) and
# runs the whole test suite, lint included.
# Extra arguments go to pytest. With CI=true, tests that need QEMU or libvirtd fail instead
# of skipping when a prerequisite is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
exec .venv/bin/python -m pytest -ra "$@"
