#!/usr/bin/env bash
# Installs the PostgreSQL server binaries (initdb, pg_ctl, postgres, pg_basebackup) that the
# PostgreSQL tests start throwaway clusters with. Run by the tests when none are found; safe to
# run again. Needs root (or sudo) and access to the Debian package mirrors.
set -euo pipefail
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; then
  exit 0
fi
"$(dirname "$0")/apt-install.sh" postgresql
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1
