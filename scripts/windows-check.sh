#!/usr/bin/env bash
# Builds onshi for Windows (x86_64-pc-windows-gnu, MinGW) and runs `onshi.exe demo --check`
# under Wine: the center, the gateway's file interface, the card path and 695 checks against
# the ground truth, on Windows' file system and sockets API as Wine provides them. Clinics run
# Windows; this is how the project checks that the same code works there without a Windows PC.
#
# Not part of `cargo test` (a second target doubles the build, ~5 minutes on two cores). Needs
# rustup (for the target), root or sudo and the Debian mirrors (for MinGW and Wine).
#
#   bash scripts/windows-check.sh           # build, then the morning check under Wine
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=x86_64-pc-windows-gnu
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo -n"; fi
export DEBIAN_FRONTEND=noninteractive

if ! command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1 || ! [ -x /usr/lib/wine/wine64 ]; then
  echo "windows-check: installing MinGW and Wine (Debian)" >&2
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends gcc-mingw-w64-x86-64 wine64 wine >/dev/null
fi
rustup target add "$TARGET" >/dev/null

export CARGO_TARGET_DIR="${ONSHI_WINDOWS_TARGET_DIR:-target/windows}"
cargo build --release --target "$TARGET" -p onshi
EXE="$(cd "$CARGO_TARGET_DIR/$TARGET/release" && pwd)/onshi.exe"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
export WINEPREFIX="$WORK/prefix" WINEDEBUG=-all
/usr/lib/wine/wine64 wineboot --init >/dev/null 2>&1 || true

# Rust's standard library asks bcryptprimitives.dll (ProcessPrng) for random bytes; Windows 10
# and later have it, Debian's Wine 8 does not. A stand-in that forwards to RtlGenRandom.
cat >"$WORK/bcryptprimitives.c" <<'C'
#include <windows.h>
#include <ntsecapi.h>
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!RtlGenRandom(data, chunk)) return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
C
x86_64-w64-mingw32-gcc -shared -o "$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll" "$WORK/bcryptprimitives.c" -ladvapi32

mkdir -p "$WORK/run"
cd "$WORK/run"
/usr/lib/wine/wine64 "$EXE" demo --check
