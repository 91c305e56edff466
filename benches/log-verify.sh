#!/usr/bin/env bash
# Builds a log of N entries (default 1,000,000) through the real writer, then times
# custody-verify against sha256sum over the same files, best of 3 runs each.
# Usage: benches/log-verify.sh [entries] [dir]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000000}"
DIR="${2:-$(mktemp -d)/log}"
cargo build --release -q -p custody-verify -p custody-log --bin custody-verify --example gen_log
BIN=target/release
if [ ! -d "$DIR" ]; then
  "$BIN/examples/gen_log" "$DIR" "$N" 64 > "$DIR.vkey"
fi
echo "log: $DIR ($(du -sh "$DIR" | cut -f1), $(cat "$DIR"/log-*.jsonl | wc -l) entries)"
cat "$DIR"/* > /dev/null # warm the page cache for both
best() { sort -n | head -1; }
t() { local s e; s=$(date +%s.%N); "$@" > /dev/null; e=$(date +%s.%N); echo "$e - $s" | bc; }
V=$(for _ in 1 2 3; do t "$BIN/custody-verify" "$DIR" --key "$DIR.vkey"; done | best)
H=$(for _ in 1 2 3; do t sha256sum "$DIR"/*; done | best)
"$BIN/custody-verify" "$DIR" --key "$DIR.vkey" | grep -E "^(intact|FAILED)"
echo "custody-verify: ${V}s   sha256sum: ${H}s   ratio: $(echo "scale=2; $V / $H" | bc)"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
