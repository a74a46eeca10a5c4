#!/usr/bin/env bash
# A chat through a real edgeim binary of any architecture: add two users with
# the binary's own `user add`, start `serve`, and have the load generator (a
# host binary) log both in, register them and exchange texts with their 9001
# and 9101 answers; then stop the server with SIGTERM and check it exited 0.
#
#   packaging/smoke.sh [--runner CMD] [--config FILE] BINARY
#
#   --runner CMD   run BINARY through CMD, e.g. "qemu-aarch64 -L /usr/aarch64-linux-gnu"
#   --config FILE  use FILE (e.g. a package's /etc/edgeim/edgeim.toml) instead of a
#                  temporary config; its data_dir is used, u0 and u1 are removed after
#
# CI runs it on both ARM builds under qemu-user and on the installed .deb.
# The load generator is $BENCH (default target/debug/edgeim-bench).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

runner=()
config=""
while [ $# -gt 1 ]; do
    case "$1" in
        --runner) read -r -a runner <<<"$2"; shift 2 ;;
        --config) config="$2"; shift 2 ;;
        *) break ;;
    esac
done
[ $# -eq 1 ] || { echo "usage: $0 [--runner CMD] [--config FILE] BINARY" >&2; exit 2; }
bin="$1"
bench="${BENCH:-target/debug/edgeim-bench}"
[ -x "$bench" ] || { echo "error: $bench is missing: cargo build --bins" >&2; exit 1; }
edgeim() { "${runner[@]}" "$bin" "$@"; }

work="$(mktemp -d)"
server_pid=""
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    if [ -n "$config" ]; then
        for u in u0 u1; do edgeim user remove "$u" --config "$config" >/dev/null 2>&1 || true; done
    fi
    rm -rf "$work"
}
trap cleanup EXIT

if [ -z "$config" ]; then
    config="$work/edgeim.toml"
    printf 'data_dir = "%s/data"\n[http]\nlisten = "127.0.0.1:0"\n[websocket]\nlisten = "127.0.0.1:0"\n' \
        "$work" >"$config"
fi

echo "smoke: $("${runner[@]}" "$bin" --version) ${runner[*]:+(through ${runner[*]})}"
password="smoke-password-$$"
for u in u0 u1; do
    printf '%s\n' "$password" | edgeim user add "$u" --config "$config"
done

# The ports are read from the log, so port 0 (any free port) works.
log="$work/server.log"
EDGEIM_LOG=info "${runner[@]}" "$bin" serve --config "$config" 2>"$log" &
server_pid=$!
http="" ws=""
deadline=$((SECONDS + 120))
while [ -z "$http" ] || [ -z "$ws" ]; do
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "error: the server exited before it listened; its log:" >&2
        cat "$log" >&2
        exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "error: the server did not listen within 120 s; its log:" >&2
        cat "$log" >&2
        exit 1
    fi
    http="$(sed -n 's/.*http listening on \([^ ]*\).*/\1/p' "$log" | head -n1)"
    ws="$(sed -n 's/.*websocket listening on \([^ ]*\).*/\1/p' "$log" | head -n1)"
    [ -n "$http" ] && [ -n "$ws" ] || sleep 0.2
done
echo "smoke: serving on http://$http and $ws"

# Five texts a second from u0 to u1, each acknowledged with a 9101: well
# inside the default rate limits. The bench exits non-zero unless texts
# flowed and every answer was 200.
"$bench" --server "http://$http" --ws "$ws" --password "$password" \
    rate --rate 5 --pairs 1 --seconds 2 --drain 30

kill -TERM "$server_pid"
status=0
wait "$server_pid" || status=$?
server_pid=""
if [ "$status" -ne 0 ]; then
    echo "error: the server exited with status $status after SIGTERM; its log:" >&2
    cat "$log" >&2
    exit 1
fi
echo "smoke: ok (the server stopped cleanly)"
