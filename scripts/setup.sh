#!/usr/bin/env bash
# Installs everything snapaudit needs on a fresh Debian 12/13 machine (run as root):
# libvirt 11.x + QEMU 10.x (bookworm-backports on Debian 12), qemu-utils, and the
# package with its test extras in ./.venv. Safe to run again: every step is idempotent.
# With --test (scripts/test.sh passes it) it also installs what only the tests need: rpmbuild,
# groff and man, zsh, and the distribution's own Python with its libvirt and lxml bindings,
# setuptools, wheel, build and installer (offline builds, the RPM, the wheel on the system's
# bindings), and Chromium with poppler's pdftotext (the HTML report in a real browser).
set -euo pipefail
cd "$(dirname "$0")/.."

with_test_packages=0
[ "${1:-}" = --test ] && with_test_packages=1

log() { printf 'setup: %s\n' "$*" >&2; }

apt_packages=(
  libvirt-dev pkg-config libvirt-clients libvirt-daemon libvirt-daemon-driver-qemu
  qemu-system-x86 qemu-utils systemd
)

need_apt=0
for tool in pkg-config virsh libvirtd qemu-img qemu-nbd qemu-system-x86_64 systemd-analyze; do
  command -v "$tool" >/dev/null 2>&1 || need_apt=1
done
pkg-config --exists 'libvirt >= 11.0.0' 2>/dev/null || need_apt=1

if [ "$need_apt" = 1 ]; then
  if [ "$(id -u)" != 0 ]; then
    log "system packages are missing and this is not root: install ${apt_packages[*]}"
    exit 1
  fi
  release_args=()
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  if [ "$codename" = bookworm ]; then
    # Debian 12 ships libvirt 9.0; the RHEL 10 generation (11.x) lives in backports.
    if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
      log "enabling bookworm-backports"
      cat > /etc/apt/sources.list.d/backports.sources <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    fi
    release_args=(-t bookworm-backports)
  fi
  log "installing ${apt_packages[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confold "${release_args[@]}" "${apt_packages[@]}" >/dev/null
fi

# From the distribution's main suite, never backports: the wheel is tested on the bindings
# Debian 12 ships (python3-libvirt 9.0, python3-lxml 4.9), the floors pyproject.toml states.
test_apt_packages=(
  rpm groff-base man-db zsh python3 python3-venv python3-pip python3-setuptools python3-wheel
  python3-build python3-installer python3-libvirt python3-lxml chromium poppler-utils
)
if [ "$with_test_packages" = 1 ]; then
  need_test_apt=0
  for tool in rpmbuild groff man zsh /usr/bin/python3 chromium pdftotext; do
    command -v "$tool" >/dev/null 2>&1 || need_test_apt=1
  done
  if ! /usr/bin/python3 -c 'import build, ensurepip, installer, libvirt, lxml, pip, setuptools, wheel' \
    >/dev/null 2>&1; then
    need_test_apt=1
  fi
  if [ "$need_test_apt" = 1 ]; then
    if [ "$(id -u)" != 0 ]; then
      log "test packages are missing and this is not root: install ${test_apt_packages[*]}"
      exit 1
    fi
    log "installing ${test_apt_packages[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      -o Dpkg::Options::=--force-confold "${test_apt_packages[@]}" >/dev/null
  fi
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  "$python" -m venv .venv
fi
log "installing snapaudit and its extras into .venv"
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
log "ready: $(.venv/bin/snapaudit --version)"
