#!/usr/bin/env bash
# Fails unless BINARY references no glibc symbol version above FLOOR:
#
#   bash packaging/glibc-floor.sh BINARY 2.31
#
# A binary linked against a newer glibc than the target system's is refused
# by its loader ("version `GLIBC_2.34' not found"), so this is what decides
# whether a package runs on Raspberry Pi OS bullseye (glibc 2.31).
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 BINARY FLOOR" >&2; exit 2; }
bin="$1" floor="$2"
versions="$(objdump -T "$bin" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/^GLIBC_//' | sort -uV)"
[ -n "$versions" ] || { echo "error: $bin references no glibc symbols (is it dynamic?)" >&2; exit 1; }
newest="$(printf '%s\n' "$versions" | tail -n1)"
above() { [ "$1" != "$floor" ] && [ "$(printf '%s\n%s\n' "$floor" "$1" | sort -V | tail -n1)" = "$1" ]; }
if above "$newest"; then
    echo "error: $bin needs glibc $newest, above the floor $floor; the symbols that do:" >&2
    for v in $versions; do
        if above "$v"; then objdump -T "$bin" | grep -E "GLIBC_${v//./\\.}[) ]" >&2 || true; fi
    done
    exit 1
fi
echo "$bin: newest glibc symbol version $newest (floor $floor)"
