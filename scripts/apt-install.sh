#!/usr/bin/env bash
# apt-get install PACKAGE… as root, or through sudo without a password; what the tests call
# (through install-browser.sh, install-pcsc.sh, install-postgres.sh) to fetch what a fresh
# Debian machine lacks.
#
# Tests run in parallel, so several may ask at once: one install runs at a time (a lock file),
# and whoever waited finds the packages there and installs nothing. apt-get itself waits for a
# dpkg lock held by anyone else (an unattended upgrade) instead of failing at once.
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
    echo "apt-install: not root and no sudo; install these Debian packages: $*" >&2
    exit 1
  fi
fi
installed() {
  for package in "$@"; do
    [ "$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null)" = "install ok installed" ] || return 1
  done
}
exec 9>"${TMPDIR:-/tmp}/onshi-apt-install.lock"
flock 9
if installed "$@"; then exit 0; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
$SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq "$@" >/dev/null
