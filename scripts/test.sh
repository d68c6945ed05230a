#!/usr/bin/env bash
# Sets up everything (scripts/setup.sh) and runs the whole test suite, lint included.
# Extra arguments go to pytest. With CI=true, tests that need QEMU or libvirtd fail instead
# of skipping when a prerequisite is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Test-only packages: the HTML report is checked in a real browser (tests/test_browser.py).
test_packages=(chromium poppler-utils)
if ! command -v chromium >/dev/null 2>&1 || ! command -v pdftotext >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${test_packages[@]}" >/dev/null
  else
    printf 'test: not root, cannot install %s\n' "${test_packages[*]}" >&2
  fi
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest -ra "$@"
