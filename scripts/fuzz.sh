#!/usr/bin/env bash
# Fuzzes the parsers of outside input with cargo-fuzz (libFuzzer), one target at a time.
#
#   scripts/fuzz.sh TARGET [SECONDS]     one target (default 300 s)
#   scripts/fuzz.sh all [SECONDS]        every target in turn, SECONDS each
#   scripts/fuzz.sh seeds                only (re)write the seed corpus
#
# Targets: request_xml uke event_line api_json pki gateway_toml appointments_csv card_apdu medical_line subsidy_line (their bodies
# are in crates/fuzz-targets; docs/FUZZING.md says what each covers). Before a run the corpus
# folder fuzz/corpus/TARGET gets the seeds: the small inputs committed in
# crates/fuzz-targets/seeds/, certificates and CRLs made by the project's own CAs, and the
# published sample claim file from the shared fixtures (../shared/fixtures/uke or
# $ONSHI_FIXTURES/uke), which is copied at run time and never committed. fuzz/corpus and
# fuzz/artifacts are git-ignored; a crash is left in fuzz/artifacts/TARGET/ and the run stops.
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). One job, one
# worker: the machines are shared. No sanitizer (`-s none`): every parser is safe Rust, and
# what is looked for (a panic, an allocation past -rss_limit_mb or -malloc_limit_mb, a slow
# input past -timeout) libFuzzer catches without one, and it runs faster without.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
targets=(request_xml uke event_line api_json pki gateway_toml appointments_csv card_apdu medical_line subsidy_line)
what="${1:-}"
seconds="${2:-300}"
if [ -z "$what" ]; then
  sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
command -v cargo-fuzz >/dev/null 2>&1 || { echo "fuzz.sh: cargo-fuzz is missing; run: cargo install cargo-fuzz" >&2; exit 1; }

echo "fuzz.sh: writing the seeds into fuzz/corpus/"
(cd "$root" && CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}" cargo run -q -p onshi-fuzz-targets --bin fuzz-seeds -- "$root/fuzz/corpus")
[ "$what" = seeds ] && exit 0

run() {
  local target="$1" log
  mkdir -p "$root/fuzz/logs"
  log="$root/fuzz/logs/$target-$(date -u +%Y%m%dT%H%M%SZ).log"
  echo "fuzz.sh: $target for $seconds s (log $log)"
  (cd "$root/fuzz" && CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}" cargo +nightly fuzz run -s none "$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
    -jobs=1 -workers=1 -print_final_stats=1 -close_fd_mask=1)
  # With -jobs libFuzzer writes the run's output to fuzz-0.log in its working folder.
  if [ -f "$root/fuzz/fuzz-0.log" ]; then mv "$root/fuzz/fuzz-0.log" "$log"; tail -n 15 "$log"; fi
}

if [ "$what" = all ]; then
  for target in "${targets[@]}"; do run "$target"; done
else
  printf '%s\n' "${targets[@]}" | grep -qx "$what" || { echo "fuzz.sh: no target $what; the targets are ${targets[*]}" >&2; exit 2; }
  run "$what"
fi
