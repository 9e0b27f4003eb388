#!/usr/bin/env bash
# Installs the PC/SC stack the card-reader tests drive: pcscd (the smart-card service, with the
# client library libpcsclite1) and vsmartcard-vpcd (a virtual reader driver for pcscd that a
# virtual card connects to over a local socket). Run by the tests when something is missing;
# safe to run again. Needs root (or sudo) and access to the Debian package mirrors.
set -euo pipefail
driver=/usr/lib/pcsc/drivers/serial/libifdvpcd.so
if command -v pcscd >/dev/null 2>&1 && [ -e "$driver" ]; then
  exit 0
fi
"$(dirname "$0")/apt-install.sh" pcscd vsmartcard-vpcd
command -v pcscd >/dev/null && [ -e "$driver" ]
