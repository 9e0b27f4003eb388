#!/usr/bin/env bash
# Installs the headless browser the reception-page test drives: Chromium and its WebDriver
# (chromedriver) from Debian. Run by the test itself when chromedriver is missing; safe to run
# again. Needs root (or sudo) and access to the Debian package mirrors.
set -euo pipefail
if command -v chromedriver >/dev/null 2>&1 && { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; }; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
    echo "install-browser: not root and no sudo; install chromium and chromium-driver (Debian) or set ONSHI_CHROMEDRIVER" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
command -v chromedriver >/dev/null
