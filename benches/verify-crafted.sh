#!/usr/bin/env bash
# The verifier's memory and time on a large log and on crafted inputs (peak RSS from
# /usr/bin/time). Usage: benches/verify-crafted.sh [entries of the real log, default 1000000]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000000}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cargo build --release -q -p custody-verify -p custody-log --bin custody-verify --example gen_log
BIN=target/release
"$BIN/examples/gen_log" "$WORK/real" "$N" 64 > "$WORK/real.vkey"
ORIGIN="$(cut -d+ -f1 "$WORK/real.vkey")"
measure() { # name dir
  /usr/bin/time -o "$WORK/time" -f "%M %e" "$BIN/custody-verify" "$2" --key "$WORK/real.vkey" > "$WORK/out" 2>&1 || true
  local rss secs
  rss=$(cut -d' ' -f1 < "$WORK/time" | tail -1)
  secs=$(cut -d' ' -f2 < "$WORK/time" | tail -1)
  printf '%-44s %6s MiB peak RSS %7s s   %s\n' "$1" "$((rss / 1024))" "$secs" "$(grep -E '^(intact|FAILED)' "$WORK/out" | cut -c1-100)"
}
echo "log of $N entries: $(du -sh "$WORK/real" | cut -f1)"
measure "real log, $N entries" "$WORK/real"
mkdir -p "$WORK/jumps" "$WORK/empty16" "$WORK/empty256" "$WORK/longline"
python3 - "$ORIGIN" "$WORK" <<'PY'
import json, sys
origin, work = sys.argv[1], sys.argv[2]
with open(f"{work}/jumps/log-000000.jsonl", "w") as f:
    for i in range(3000):
        f.write(json.dumps({"seq": i * 20000, "time": "2026-12-01T00:00:00.000000Z", "origin": origin,
                            "prev": "0" * 64, "kind": "gateway_stopped", "reason": "x"}, separators=(",", ":")) + "\n")
PY
head -c $((16 << 20)) /dev/zero | tr '\0' '\n' > "$WORK/empty16/log-000000.jsonl"
head -c $((256 << 20)) /dev/zero | tr '\0' '\n' > "$WORK/empty256/log-000000.jsonl"
{ head -c $((256 << 20)) /dev/zero | tr '\0' 'x'; echo; } > "$WORK/longline/log-000000.jsonl"
measure "3,000 lines, seq +20,000 each ($(du -h "$WORK/jumps/log-000000.jsonl" | cut -f1))" "$WORK/jumps"
measure "16 MiB of empty lines" "$WORK/empty16"
measure "256 MiB of empty lines" "$WORK/empty256"
measure "one 256 MiB line" "$WORK/longline"
