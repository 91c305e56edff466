#!/usr/bin/env bash
# The gateway against a plain proxy, side by side, in one run on this machine.
#
#   benches/gateway-vs-nginx.sh            # builds, starts everything, prints the tables
#
# Three paths to the same fast local upstream (nginx serving /dev/shm):
#   direct   loadgen -> nginx upstream
#   nginx    loadgen -> nginx proxy_pass (no auth, keepalive pool) -> upstream: the ceiling
#   gateway  loadgen -> custody-gateway (SigV4 check, decision, fsynced log entry,
#            re-sign with STS credentials from moto) -> upstream
# The same generator (benches/loadgen, SigV4-signing every request) drives all three.
# Then gateway memory: RSS idle, with 1,000 open connections, and peak RSS while
# streaming an upload of UPLOAD_BYTES (1 GiB) compared with a 64 MiB one.
#
# Knobs (environment): DURATION (s per point, 5), WARMUP (s, 1), GET_CONC ("1 8 32 128"),
# PUT_CONC ("1 8 32"), GET_RATES (fixed GET rates in requests/s, open loop, "1000 4000"),
# RATE_CONC (connections for those, 8), UPLOAD_BYTES (1073741824), HOLD_CONNS (1000), PIN (1 = loadgen on
# CPU 1, servers on CPU 0), KEEP (1 = keep the work dir), RESULTS (copy results here),
# SKIP_BUILD (1 = use the release binaries already built), PROFILE (1 = perf profile only,
# at PROFILE_CONC connections, 8), SERVE (1 = start everything, write $WORK/env.sh, wait),
# GEN_THREADS (generator threads, 1), GW_ENV (extra VAR=value words for the gateways'
# environment, e.g. "TOKIO_WORKER_THREADS=1"), GW_AGENT_THREADS (the gateways' `[agent] threads`; unset: the gateway's default), GW_LOG (lines for
# the gateways' `[log]` table, e.g. "inline_commit = false"), GATEWAY_BIN (a custody-gateway
# binary to run instead of the release build, e.g. a copy built from another commit for A/B).
# Traffic stays on 127.0.0.1. Not part of CI.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DURATION="${DURATION:-5}"
WARMUP="${WARMUP:-1}"
GET_CONC="${GET_CONC:-1 8 32 128}"
PUT_CONC="${PUT_CONC:-1 8 32}"
GET_RATES="${GET_RATES:-1000 4000}"
RATE_CONC="${RATE_CONC:-8}"
UPLOAD_BYTES="${UPLOAD_BYTES:-1073741824}"
HOLD_CONNS="${HOLD_CONNS:-1000}"
PIN="${PIN:-0}"
KEEP="${KEEP:-0}"
GEN_THREADS="${GEN_THREADS:-1}"
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"

say() { printf '== %s\n' "$*" >&2; }

# --- prerequisites: nginx (Debian), moto (pip), release binaries ----------------------
if ! command -v nginx >/dev/null 2>&1 && [[ ! -x /usr/sbin/nginx ]]; then
    say "installing nginx"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
fi
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
python3 -c 'import moto, flask, flask_cors, boto3' 2>/dev/null || "$ROOT/scripts/install-test-peers.sh"

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    say "building release binaries"
    (cd "$ROOT" && cargo build --release -q -p custody-gateway -p custody-loadgen)
fi
TARGET_DIR="$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
GATEWAY="${GATEWAY_BIN:-$TARGET_DIR/release/custody-gateway}"
LOADGEN="$TARGET_DIR/release/custody-loadgen"

# --- work dirs, pids, cleanup -----------------------------------------------------------
WORK="$(mktemp -d /tmp/custody-bench.XXXXXX)"       # gateway data (log on local disk)
SHM="$(mktemp -d /dev/shm/custody-bench.XXXXXX)"    # upstream files (RAM)
chmod 755 "$WORK" "$SHM"
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$SHM"
    if [[ "$KEEP" == 1 ]]; then say "work dir kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}
read -r UP_PORT PROXY_PORT MOTO_PORT < <(free_ports 3)

wait_port() {
    local port=$1 what=$2 i
    for i in $(seq 1 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "$what did not start on port $port" >&2
    return 1
}

if [[ "$PIN" == 1 ]]; then
    SRV=(taskset -c 0)
    GEN=(taskset -c 1)
else
    SRV=()
    GEN=()
fi

# --- upstream and plain proxy: one nginx, two server blocks ---------------------------
mkdir -p "$SHM/www/bench" "$SHM/tmp" "$WORK/nginx"
head -c 1024 /dev/urandom > "$SHM/www/bench/small.bin"
chmod -R a+rwX "$SHM"
cat > "$WORK/nginx/nginx.conf" <<EOF
worker_processes auto;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    client_body_temp_path $SHM/tmp;
    proxy_temp_path $WORK/nginx/proxy_temp;
    fastcgi_temp_path $WORK/nginx/fastcgi_temp;
    uwsgi_temp_path $WORK/nginx/uwsgi_temp;
    scgi_temp_path $WORK/nginx/scgi_temp;
    # The fast local upstream: static GETs, PUTs written to tmpfs (nginx reads the whole
    # body before answering, so an upload is really streamed end to end).
    server {
        listen 127.0.0.1:$UP_PORT;
        root $SHM/www;
        client_max_body_size 2g;
        client_body_buffer_size 1m;
        location / {
            dav_methods PUT;
            create_full_put_path on;
        }
    }
    upstream up {
        server 127.0.0.1:$UP_PORT;
        keepalive 512;
    }
    # The ceiling: a plain reverse proxy, no auth, pooled keep-alive upstream
    # connections, request bodies streamed (not spooled to disk).
    server {
        listen 127.0.0.1:$PROXY_PORT;
        client_max_body_size 2g;
        location / {
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_request_buffering off;
        }
    }
}
EOF
"${SRV[@]}" "$NGINX" -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" -g 'daemon off;' \
    2>>"$WORK/nginx/error.log" &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
wait_port "$UP_PORT" nginx
wait_port "$PROXY_PORT" "nginx proxy"

# --- moto as the STS endpoint only (no enforcement; the broker caches per grant) ------
python3 -m moto.server -H 127.0.0.1 -p "$MOTO_PORT" >"$WORK/moto.log" 2>&1 &
PIDS+=($!)
wait_port "$MOTO_PORT" moto
BOOT="$(python3 "$ROOT/crates/test-support/python/bootstrap.py" <<EOF
{"endpoint": "http://127.0.0.1:$MOTO_PORT",
 "users": [{"name": "custody-gateway", "policies": [{"Version": "2012-10-17",
   "Statement": [{"Effect": "Allow", "Action": ["sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession"], "Resource": "*"}]}]}],
 "roles": [{"name": "bench", "trusted_users": ["custody-gateway"], "max_session_duration": 3600,
   "policies": [{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}]}]}
EOF
)"
field() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(eval(sys.argv[2], {}, {"d": d}))' "$BOOT" "$1"; }
ROLE_ARN="$(field 'd["roles"]["bench"]')"
GW_AKID_STS="$(field 'd["users"]["custody-gateway"]["access_key_id"]')"
GW_SECRET_STS="$(field 'd["users"]["custody-gateway"]["secret_access_key"]')"

# --- the gateways ------------------------------------------------------------------------
# `gateway`: data dir (grant store and log) on local disk, fsync real: the product as
# deployed. `gw-tmpfs`: the same binary with its data dir on /dev/shm, so fdatasync is
# nearly free: what the request path costs apart from the disk.
ADMIN_TOKEN="bench-admin-token-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
AGENT_SHA="$(printf 'unused-agent-token-0123456789' | sha256sum | cut -d' ' -f1)"
json_field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
declare -A GW_PIDS GW_AGENT GW_ADMIN GW_AKID GW_SECRET_KEY
start_gateway() {  # name data_dir
    local name=$1 data=$2 agent admin conf grant creds id
    read -r agent admin < <(free_ports 2)
    conf="$WORK/$name.toml"
    cat >"$conf" <<EOF
data_dir = "$data"

[agent]
listen = "127.0.0.1:$agent"
${GW_AGENT_THREADS:+threads = $GW_AGENT_THREADS}

[admin]
listen = "127.0.0.1:$admin"
token = "$ADMIN_TOKEN"

[upstream]
endpoint = "http://127.0.0.1:$UP_PORT"
region = "us-east-1"

[broker]
endpoint = "http://127.0.0.1:$MOTO_PORT"

[log]
${GW_LOG:-}

[[agents]]
identity = "agent:bench"
token_sha256 = "$AGENT_SHA"

[[roles]]
name = "bench"
arn = "$ROLE_ARN"
max_ttl_secs = 3600
approvals_required = 0
EOF
    env -i PATH="$PATH" HOME="$WORK" RUST_LOG=info \
        AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true \
        AWS_ACCESS_KEY_ID="$GW_AKID_STS" AWS_SECRET_ACCESS_KEY="$GW_SECRET_STS" ${GW_ENV:-} \
        "${SRV[@]}" "$GATEWAY" serve --config "$conf" >"$WORK/$name.log" 2>&1 &
    GW_PIDS[$name]=$!
    PIDS+=("$!")
    wait_port "$admin" "$name admin"
    wait_port "$agent" "$name"
    grant="$(CUSTODY_TOKEN="$ADMIN_TOKEN" "$GATEWAY" grant request --config "$conf" \
        --identity agent:bench --task bench --intent "measure the request path" --role bench \
        --ttl 1h --allow s3:GetObject,s3:PutObject --resource 'arn:aws:s3:::bench/*')"
    id="$(json_field "$grant" id)"
    creds="$(CUSTODY_TOKEN="$ADMIN_TOKEN" "$GATEWAY" grant credentials "$id" --format json --config "$conf")"
    GW_AGENT[$name]=$agent
    GW_ADMIN[$name]=$admin
    GW_AKID[$name]="$(json_field "$creds" access_key_id)"
    GW_SECRET_KEY[$name]="$(json_field "$creds" secret_access_key)"
}
rss() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }   # KiB
start_gateway gateway "$WORK/gw"
GW_PID="${GW_PIDS[gateway]}"
RSS_IDLE_START="$(rss "$GW_PID" VmRSS)"
mkdir -p "$SHM/gw"
start_gateway gw-tmpfs "$SHM/gw"
AGENT_PORT="${GW_AGENT[gateway]}"
ADMIN_PORT="${GW_ADMIN[gateway]}"
export LOADGEN_ACCESS_KEY_ID="${GW_AKID[gateway]}" LOADGEN_SECRET_ACCESS_KEY="${GW_SECRET_KEY[gateway]}"

# A first request through each path: fails loudly here rather than as a table of errors.
check() {  # addr [loadgen args]
    local addr=$1
    shift
    "$LOADGEN" run --addr "$addr" --path /bench/small.bin --duration 0.2 --warmup 0 --label check "$@" >"$WORK/check.json"
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if d["errors"]==0 and d["requests"]>0 else f"{sys.argv[2]}: {d}")' "$WORK/check.json" "$addr"
}
check "127.0.0.1:$UP_PORT"
check "127.0.0.1:$PROXY_PORT"
check "127.0.0.1:$AGENT_PORT"
check "127.0.0.1:${GW_AGENT[gw-tmpfs]}" --access-key-id "${GW_AKID[gw-tmpfs]}" --secret-access-key "${GW_SECRET_KEY[gw-tmpfs]}"

# --- SERVE=1: leave everything running for experiments (strace, perf, ...) until killed --
if [[ "${SERVE:-0}" == 1 ]]; then
    cat >"$WORK/env.sh" <<EOF
export LOADGEN=$LOADGEN UPSTREAM=127.0.0.1:$UP_PORT NGINX_PROXY=127.0.0.1:$PROXY_PORT NGINX_PID=$NGINX_PID
export GW=127.0.0.1:$AGENT_PORT GW_PID=$GW_PID GW_ADMIN=127.0.0.1:$ADMIN_PORT
export GW_TMPFS=127.0.0.1:${GW_AGENT[gw-tmpfs]} GW_TMPFS_PID=${GW_PIDS[gw-tmpfs]} GW_TMPFS_ADMIN=127.0.0.1:${GW_ADMIN[gw-tmpfs]}
export LOADGEN_ACCESS_KEY_ID=${GW_AKID[gateway]} LOADGEN_SECRET_ACCESS_KEY=${GW_SECRET_KEY[gateway]}
export GW_TMPFS_AKID=${GW_AKID[gw-tmpfs]} GW_TMPFS_SECRET=${GW_SECRET_KEY[gw-tmpfs]}
EOF
    say "serving; source $WORK/env.sh (gw-tmpfs needs --access-key-id \$GW_TMPFS_AKID --secret-access-key \$GW_TMPFS_SECRET); Ctrl-C stops"
    while sleep 3600; do :; done
fi

# --- PROFILE=1: where the gateway's time goes (perf, software cpu-clock), then stop -----
if [[ "${PROFILE:-0}" == 1 ]]; then
    TMPFS_PID="${GW_PIDS[gw-tmpfs]}"
    for op in get put; do
        path=/bench/small.bin
        [[ "$op" == put ]] && path=/bench/put-1mib.bin
        say "profiling gw-tmpfs ($op, ${PROFILE_CONC:-8} connections, ${DURATION}s)"
        perf record -e cpu-clock -F 1999 --call-graph dwarf,32768 -p "$TMPFS_PID" -o "$WORK/perf-$op.data" \
            -- sleep "$DURATION" >/dev/null 2>&1 &
        PERF_PID=$!
        "${GEN[@]}" "$LOADGEN" run --addr "127.0.0.1:${GW_AGENT[gw-tmpfs]}" --path "$path" --method "$op" \
            --concurrency "${PROFILE_CONC:-8}" --duration "$DURATION" --warmup 0 --label "$op" \
            --access-key-id "${GW_AKID[gw-tmpfs]}" --secret-access-key "${GW_SECRET_KEY[gw-tmpfs]}"
        wait "$PERF_PID" || true
        perf report -i "$WORK/perf-$op.data" --no-children --stdio -g none --percent-limit 0.7 \
            --sort dso,symbol 2>/dev/null | grep -v "^#" | grep -v "^$" | sed "s/ *$//" | cut -c1-160 | head -45 | tee "$WORK/profile-$op.txt" || true
        perf report -i "$WORK/perf-$op.data" --children --stdio -g none --percent-limit 3 \
            --sort symbol 2>/dev/null | grep -v '^#' | grep -v "^$" | cut -c1-220 | head -150 >"$WORK/profile-$op-children.txt" || true
    done
    if [[ -n "${RESULTS:-}" ]]; then mkdir -p "$RESULTS" && cp "$WORK"/profile-*.txt "$RESULTS"/; fi
    exit 0
fi

# --- throughput and latency -------------------------------------------------------------
RESULTS_FILE="$WORK/results.jsonl"
: >"$RESULTS_FILE"
metric() {  # admin port -> sum and count of custody_log_append_seconds
    curl -s "http://127.0.0.1:$1/metrics" |
        awk '/^custody_log_append_seconds_sum/ {s=$2} /^custody_log_append_seconds_count/ {c=$2} END {printf "%s %s\n", s+0, c+0}'
}
# CPU time (user + system, clock ticks) of the processes serving a path: the gateway's
# process, or all of nginx's (for the nginx path the report takes the direct path's figure
# off, since the same nginx is the upstream). Steadier than wall-clock rates on a shared
# machine: it counts only what the server itself spent.
cpu_ticks() {  # pid... -> ticks
    local total=0 pid t
    for pid in "$@"; do
        t="$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{print $12 + $13}')"
        total=$((total + ${t:-0}))
    done
    echo "$total"
}
nginx_pids() { echo "$NGINX_PID" $(pgrep -P "$NGINX_PID"); }
point() {  # op conc path name addr admin_port "server pids" [extra loadgen args]
    local op=$1 conc=$2 path=$3 name=$4 addr=$5 admin=$6 pids=$7
    shift 7
    local before="0 0" after="0 0" line cpu0 cpu1
    if [[ -n "$admin" ]]; then before="$(metric "$admin")"; fi
    # shellcheck disable=SC2086
    cpu0="$(cpu_ticks $pids)"
    line="$("${GEN[@]}" "$LOADGEN" run --addr "$addr" --path "$path" --method "$op" --threads "$GEN_THREADS" \
        --concurrency "$conc" --duration "$DURATION" --warmup "$WARMUP" --label "${LABEL:-$op}" "$@")"
    # shellcheck disable=SC2086
    cpu1="$(cpu_ticks $pids)"
    if [[ -n "$admin" ]]; then after="$(metric "$admin")"; fi
    python3 - "$line" "$before" "$after" "$name" "$((cpu1 - cpu0))" "$(getconf CLK_TCK)" >>"$RESULTS_FILE" <<'EOF'
import json, sys
d = json.loads(sys.argv[1])
(s0, c0), (s1, c1) = (map(float, a.split()) for a in sys.argv[2:4])
d["path"] = sys.argv[4]
d["log_appends"] = c1 - c0
d["log_append_mean_us"] = (s1 - s0) / (c1 - c0) * 1e6 if c1 > c0 else None
sent = d.get("sent_incl_warmup") or 0
d["server_cpu_us_per_req"] = int(sys.argv[5]) / int(sys.argv[6]) * 1e6 / sent if sent else None
print(json.dumps(d))
EOF
}
four_paths() {  # op conc path [extra loadgen args]: one point on each path
    local op=$1 conc=$2 path=$3
    shift 3
    point "$op" "$conc" "$path" direct "127.0.0.1:$UP_PORT" "" "$(nginx_pids)" "$@"
    point "$op" "$conc" "$path" nginx "127.0.0.1:$PROXY_PORT" "" "$(nginx_pids)" "$@"
    point "$op" "$conc" "$path" gateway "127.0.0.1:$AGENT_PORT" "$ADMIN_PORT" "$GW_PID" "$@"
    point "$op" "$conc" "$path" gw-tmpfs "127.0.0.1:${GW_AGENT[gw-tmpfs]}" "${GW_ADMIN[gw-tmpfs]}" "${GW_PIDS[gw-tmpfs]}" \
        --access-key-id "${GW_AKID[gw-tmpfs]}" --secret-access-key "${GW_SECRET_KEY[gw-tmpfs]}" "$@"
}
run_matrix() {  # op path "conc list"
    local op=$1 path=$2 conc
    for conc in $3; do
        say "$op c=$conc"
        four_paths "$op" "$conc" "$path"
    done
}
run_matrix get /bench/small.bin "$GET_CONC"
run_matrix put /bench/put-1mib.bin "$PUT_CONC"
# Moderate load: the same GET at fixed rates (open loop), where the added latency is the
# gateway's own and not queueing behind a saturated CPU.
for rate in $GET_RATES; do
    say "get at $rate/s over $RATE_CONC connections"
    LABEL=get-rate four_paths get "$RATE_CONC" /bench/small.bin --rate "$rate"
done

# --- memory -------------------------------------------------------------------------------
RSS_IDLE_AFTER="$(rss "$GW_PID" VmRSS)"
say "holding $HOLD_CONNS connections"
"${GEN[@]}" "$LOADGEN" hold --addr "127.0.0.1:$AGENT_PORT" --path /bench/small.bin \
    --connections "$HOLD_CONNS" --hold 4 >"$WORK/hold.json" 2>"$WORK/hold.err" &
HOLD_PID=$!
for _ in $(seq 1 600); do
    grep -q '^ready' "$WORK/hold.err" 2>/dev/null && break
    kill -0 "$HOLD_PID" 2>/dev/null || break
    sleep 0.1
done
sleep 1
RSS_HOLD="$(rss "$GW_PID" VmRSS)"
wait "$HOLD_PID" || { cat "$WORK/hold.err" >&2; exit 1; }
sleep 2
RSS_AFTER_HOLD="$(rss "$GW_PID" VmRSS)"

upload_peak() {  # bytes payload -> "peak_kib before_kib json"
    local line before
    echo 5 >"/proc/$GW_PID/clear_refs"   # reset VmHWM to the current RSS
    before="$(rss "$GW_PID" VmRSS)"
    line="$("${GEN[@]}" "$LOADGEN" upload --addr "127.0.0.1:$AGENT_PORT" --path /bench/upload.bin \
        --bytes "$1" --payload "$2")"
    echo "$(rss "$GW_PID" VmHWM) $before $line"
    rm -f "$SHM/www/bench/upload.bin"
}
say "uploads"
read -r PEAK_64M BEFORE_64M UP_64M < <(upload_peak $((64 << 20)) sha256)
read -r PEAK_1G BEFORE_1G UP_1G < <(upload_peak "$UPLOAD_BYTES" sha256)
read -r PEAK_1G_U BEFORE_1G_U UP_1G_U < <(upload_peak "$UPLOAD_BYTES" unsigned)
PEAK_ALL="$(rss "$GW_PID" VmHWM)"

# --- fsync cost on the log's disk ---------------------------------------------------------
FSYNC="$(python3 - "$WORK/gw" <<'EOF'
import os, statistics, sys, time
path = os.path.join(sys.argv[1], "fsync-probe")
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
t = []
for _ in range(200):
    os.write(fd, b"x" * 400)
    a = time.perf_counter(); os.fdatasync(fd); t.append((time.perf_counter() - a) * 1e6)
os.close(fd); os.unlink(path)
t.sort()
print(f"{statistics.median(t):.0f} {t[int(len(t) * 0.99)]:.0f}")
EOF
)"

# --- report -------------------------------------------------------------------------------
python3 "$ROOT/benches/report.py" "$RESULTS_FILE" <<EOF
{"rss_idle_start_kib": $RSS_IDLE_START, "rss_idle_after_load_kib": $RSS_IDLE_AFTER,
 "rss_hold_kib": $RSS_HOLD, "rss_after_hold_kib": $RSS_AFTER_HOLD,
 "hold": $(cat "$WORK/hold.json"), "hold_conns": $HOLD_CONNS,
 "peak_64m_kib": $PEAK_64M, "before_64m_kib": $BEFORE_64M, "upload_64m": $UP_64M,
 "peak_1g_kib": $PEAK_1G, "before_1g_kib": $BEFORE_1G, "upload_1g": $UP_1G,
 "peak_1g_unsigned_kib": $PEAK_1G_U, "before_1g_unsigned_kib": $BEFORE_1G_U,
 "upload_1g_unsigned": $UP_1G_U,
 "peak_all_kib": $PEAK_ALL,
 "fsync_us": "$FSYNC", "duration": $DURATION, "pin": "$PIN", "gen_threads": $GEN_THREADS,
 "load_start": "$LOAD_START", "load_end": "$(cut -d' ' -f1-3 /proc/loadavg)",
 "nproc": $(nproc), "cpu": "$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)",
 "date": "$(date -u +%Y-%m-%dT%H:%MZ)", "commit": "$(cd "$ROOT" && git rev-parse --short HEAD)"}
EOF
if [[ -n "${RESULTS:-}" ]]; then cp "$RESULTS_FILE" "$RESULTS"; fi
