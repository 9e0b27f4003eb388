#!/usr/bin/env bash
# apt-get install PACKAGE… as root, or through sudo without a password; what the tests call
# (through install-browser.sh, install-pcsc.sh) to fetch what a fresh Debian machine lacks.
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
    echo "apt-install: not root and no sudo; install these Debian packages: $*" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq "$@" >/dev/null
