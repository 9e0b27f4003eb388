#!/usr/bin/env bash
# Installs the headless browser the reception-page test drives: Chromium and its WebDriver
# (chromedriver) from Debian, and a Japanese font (IPA Gothic) so that the pages' screenshots
# (docs/screenshots) show the text a clinic's PC shows. Run by the test itself when chromedriver is missing; safe to run
# again. Needs root (or sudo) and access to the Debian package mirrors.
set -euo pipefail
if command -v chromedriver >/dev/null 2>&1 && { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; }; then
  exit 0
fi
"$(dirname "$0")/apt-install.sh" chromium chromium-driver fonts-ipafont-gothic
command -v chromedriver >/dev/null
