#!/usr/bin/env bash
# Heap frees per GET in the gateway: a uprobe on mimalloc's `mi_free` in the release
# binary, counted with `perf stat` on the tmpfs gateway while the load generator sends
# GETs. A steady stand-in for per-request allocations (every allocation is freed).
#
#   benches/frees-per-request.sh [GATEWAY_BIN]     (default target/release/custody-gateway)
#
# Knobs: CONC (connections, 8), SECONDS_MEASURED (5). Needs root for perf probes. Starts
# everything with `SERVE=1 benches/gateway-vs-nginx.sh` (so `SKIP_BUILD=1` rules apply:
# build the release binaries first) and stops it all again.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${1:-target/release/custody-gateway}")
CONC=${CONC:-8}
SECS=${SECONDS_MEASURED:-5}
say() { echo "== $*" >&2; }

serve_log=$(mktemp)
cleanup() {
    perf probe -q -d 'probe_*:mi_free' >/dev/null 2>&1 || true
    [[ -n "${SERVE_PID:-}" ]] && kill -- -"$SERVE_PID" 2>/dev/null || true
    rm -f "$serve_log"
}
trap cleanup EXIT

GATEWAY_BIN=$BIN SERVE=1 SKIP_BUILD=1 setsid benches/gateway-vs-nginx.sh >"$serve_log" 2>&1 &
SERVE_PID=$!
for _ in $(seq 120); do grep -q "serving;" "$serve_log" && break; sleep 1; done
env_sh=$(grep -o "source [^ ]*env.sh" "$serve_log" | cut -d' ' -f2)
[[ -n "$env_sh" ]] || { cat "$serve_log" >&2; exit 1; }
# shellcheck disable=SC1090
source "$env_sh"

perf probe -q -x "$BIN" --add mi_free >/dev/null
event=$(perf probe -l 2>/dev/null | awk '/mi_free/ {print $1; exit}')
gen() {
    "$LOADGEN" run --addr "$GW_TMPFS" --path /bench/small.bin --method get --concurrency "$CONC" \
        --duration "$1" --warmup 0 --label get \
        --access-key-id "$GW_TMPFS_AKID" --secret-access-key "$GW_TMPFS_SECRET"
}
say "warm-up"
gen 2 >/dev/null
say "counting frees in $BIN ($CONC connections, ${SECS}s)"
stat_out=$(mktemp)
perf stat -x, -e "$event" -p "$GW_TMPFS_PID" -o "$stat_out" -- sleep "$((SECS + 1))" &
stat_pid=$!
result=$(gen "$SECS")
wait "$stat_pid"
frees=$(awk -F, '/mi_free/ {print $1}' "$stat_out")
rm -f "$stat_out"
requests=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["requests"])' "$result")
python3 -c 'import sys; f, r = int(sys.argv[1]), int(sys.argv[2]); print(f"frees {f} requests {r} frees per GET {f / r:.1f}")' "$frees" "$requests"
