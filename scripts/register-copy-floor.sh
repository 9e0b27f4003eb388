#!/usr/bin/env bash
# The storage floor of an import on PostgreSQL: how fast the server alone takes the rows an
# import produced, through binary COPY, with nothing of onshi's in the way.
#
# Exports persons, coverages, dated terms and events (the four main tables an import fills; its
# statistics and change log rows are left out) from a register an import filled (binary
# COPY to files), then loads them into a scratch database with the same tables, indexes and
# foreign keys, in one transaction (fsync and synchronous commit as the cluster has them):
#   kept   - indexes and foreign keys in place while the rows go in (an import into a register
#            that already holds data);
#   after  - the tables bare, the rows in, then the primary keys, indexes and foreign keys
#            built (pg_dump's post-data section), the lever for a load into an empty register.
# No parsing, validation, rules or client encoding: the rate printed is what PostgreSQL's own
# tables cost on this machine, the floor under `onshi center import --db postgres://…`
# (docs/PERFORMANCE.md, issue 14). The machine's busy CPU over each load is printed beside it.
#
# usage: scripts/register-copy-floor.sh postgres://USER:PASSWORD@HOST:PORT/IMPORTED_DB [WORK_DIR]
set -euo pipefail
source_url=$1
work=${2:-$(mktemp -d)}
# The scratch database is named by replacing the URL's last path segment: a URL with
# parameters after it, or naming the scratch database itself, is refused rather than mangled.
case "$source_url" in
  *\?*) echo "give the database URL without ?parameters (put them in PGSSLMODE and the like)" >&2; exit 2 ;;
  */copy_floor) echo "the source database must not be called copy_floor (this script drops that one)" >&2; exit 2 ;;
esac
mkdir -p "$work"
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
psql() { "$bin/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }
tables=(persons coverages coverage_terms insurer_events)
scratch_url="${source_url%/*}/copy_floor"

events=$(psql -At -d "$source_url" -c "SELECT count(*) FROM insurer_events")
for t in "${tables[@]}"; do
  psql -d "$source_url" -c "\\copy $t TO '$work/$t.bin' (FORMAT binary)"
done
dump_args=()
for t in "${tables[@]}"; do dump_args+=(--table="$t"); done
"$bin/pg_dump" --schema-only --no-owner --section=pre-data "${dump_args[@]}" -d "$source_url" >"$work/pre.sql"
"$bin/pg_dump" --schema-only --no-owner --section=post-data "${dump_args[@]}" -d "$source_url" >"$work/post.sql"
echo "$events events; rows exported to $work ($(du -sh "$work" | cut -f1))"

busy() { awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat; }
load() { # $1: kept or after
  psql -d "${source_url%/*}/postgres" -c "DROP DATABASE IF EXISTS copy_floor" -c "CREATE DATABASE copy_floor"
  {
    if [ "$1" = kept ]; then cat "$work/pre.sql" "$work/post.sql"; else cat "$work/pre.sql"; fi
  } | psql -d "$scratch_url" >/dev/null
  {
    echo "BEGIN;"
    for t in "${tables[@]}"; do echo "\\copy $t FROM '$work/$t.bin' (FORMAT binary)"; done
    if [ "$1" = after ]; then cat "$work/post.sql"; fi
    echo "COMMIT;"
  } >"$work/load-$1.sql"
  local ticks=$(getconf CLK_TCK) before after started ended
  before=$(busy)
  started=$(date +%s.%N)
  psql -d "$scratch_url" -f "$work/load-$1.sql" >/dev/null
  ended=$(date +%s.%N)
  after=$(busy)
  awk -v e="$events" -v s="$started" -v t="$ended" -v b="$before" -v a="$after" -v hz="$ticks" -v mode="$1" 'BEGIN {
    secs = t - s; cpu = (a - b) / hz
    printf "%-5s %d events in %.1f s: %.0f events/s; machine CPU busy %.1f s, %.1f µs per event\n", mode, e, secs, e / secs, cpu, cpu * 1e6 / e
  }'
}
load kept
load after
psql -d "${source_url%/*}/postgres" -c "DROP DATABASE IF EXISTS copy_floor"
