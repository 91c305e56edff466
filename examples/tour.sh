#!/usr/bin/env bash
# The Custody tour: a local AWS stand-in (moto, with signature checking and IAM
# enforcement on), the gateway in front of it, a grant for one bucket, the aws CLI as the
# agent, an allowed and a denied call, revocation, and the auditor's verdict.
#
#   ./examples/tour.sh
#
# Needs: cargo, python3 with moto[server], boto3 and awscli (./scripts/install-test-peers.sh).
# Everything runs on 127.0.0.1 ports picked at run time and is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-test-peers.sh
cargo build --quiet -p custody-gateway -p custody-verify
BIN="$PWD/target/debug"
WORK="$(mktemp -d)"
PIDS=()
# Stop the gateway first (it seals the log and writes its files on SIGTERM), wait for each
# process to be gone, and only then remove their directory.
cleanup() {
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        kill "${PIDS[$i]}" 2>/dev/null || true
        wait "${PIDS[$i]}" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. Start a local AWS stand-in (moto) and bootstrap it"
MOTO_PORT=$(free_port)
INITIAL_NO_AUTH_ACTION_COUNT=1000000 python3 -m moto.server -H 127.0.0.1 -p "$MOTO_PORT" >"$WORK/moto.log" 2>&1 &
PIDS+=($!)
MOTO="http://127.0.0.1:$MOTO_PORT"
until curl -sf "$MOTO/moto-api/" >/dev/null 2>&1; do sleep 0.2; done
cat >"$WORK/plan.json" <<JSON
{"endpoint": "$MOTO",
 "users": [{"name": "custody-gateway", "policies": [{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession"], "Resource": "*"}]}]}],
 "roles": [{"name": "agent", "trusted_users": ["custody-gateway"], "max_session_duration": 3600,
            "policies": [{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:*", "dynamodb:*"], "Resource": "*"}]}]}],
 "buckets": [{"name": "reports", "objects": {"q1/summary.txt": "revenue up 12%"}}],
 "tables": ["ledger"], "queues": []}
JSON
python3 crates/test-support/python/bootstrap.py <"$WORK/plan.json" >"$WORK/created.json"
curl -sf -X POST -H 'Content-Type: text/plain' --data-binary 0 "$MOTO/moto-api/reset-auth" >/dev/null   # enforcement on from here
read -r GW_KEY GW_SECRET ROLE_ARN < <(python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); u=c["users"]["custody-gateway"]; print(u["access_key_id"], u["secret_access_key"], c["roles"]["agent"])' "$WORK/created.json")
echo "moto on $MOTO; the gateway's own IAM user may only assume $ROLE_ARN"

step "2. Start the gateway in front of it, with one registered agent identity"
AGENT_PORT=$(free_port); ADMIN_PORT=$(free_port)
"$BIN/custody-gateway" agent-token --identity agent:report-bot >"$WORK/agent-token.txt"
AGENT_TOKEN=$(sed -n 2p "$WORK/agent-token.txt")
cat >"$WORK/custody.toml" <<TOML
data_dir = "$WORK/data"
[agent]
listen = "127.0.0.1:$AGENT_PORT"
[admin]
listen = "127.0.0.1:$ADMIN_PORT"
[upstream]
endpoint = "$MOTO"
region = "us-east-1"
[[roles]]
name = "report-reader"
arn = "$ROLE_ARN"
max_ttl_secs = 3600
approvals_required = 1
$(sed -n '4,$p' "$WORK/agent-token.txt")
TOML
AWS_ACCESS_KEY_ID=$GW_KEY AWS_SECRET_ACCESS_KEY=$GW_SECRET AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null \
  "$BIN/custody-gateway" serve --config "$WORK/custody.toml" >"$WORK/gateway.log" 2>&1 &
PIDS+=($!)
until curl -sf "http://127.0.0.1:$ADMIN_PORT/healthz" >/dev/null 2>&1; do sleep 0.1; done
export CUSTODY_CONFIG="$WORK/custody.toml"   # the CLI finds the admin API and token from it
echo "agents → http://127.0.0.1:$AGENT_PORT, admin → http://127.0.0.1:$ADMIN_PORT"

step "3. The agent asks for a grant for one bucket; the operator approves it"
GRANT=$(CUSTODY_TOKEN=$AGENT_TOKEN "$BIN/custody-gateway" grant request --task q1-report \
  --intent "summarise the Q1 report" --role report-reader --ttl 15m \
  --allow s3:GetObject,s3:ListBucket --resource arn:aws:s3:::reports --resource 'arn:aws:s3:::reports/*')
ID=$(echo "$GRANT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
echo "grant $ID is $(echo "$GRANT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')"
"$BIN/custody-gateway" grant approve "$ID" | python3 -c 'import json,sys; g=json.load(sys.stdin); print("grant", g["id"], "is", g["status"])'

step "4. The agent's environment: the grant's own key pair, the gateway as endpoint"
eval "$(CUSTODY_TOKEN=$AGENT_TOKEN "$BIN/custody-gateway" grant credentials "$ID" --format env)"
unset CUSTODY_CONFIG
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_MAX_ATTEMPTS=1
echo "AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID"

step "5. Allowed: list and get"
aws s3api list-objects-v2 --bucket reports --query 'Contents[].Key' --output text
aws s3 cp s3://reports/q1/summary.txt -; echo

step "6. Denied by the gateway (never reaches AWS): a put and a DynamoDB call"
echo "draft" | aws s3 cp - s3://reports/q1/draft.txt 2>&1 | tail -1 || true
aws dynamodb scan --table-name ledger 2>&1 | tail -1 || true

step "7. Revoke the grant: the next call is denied"
export CUSTODY_CONFIG="$WORK/custody.toml"
"$BIN/custody-gateway" grant revoke "$ID" --reason "report done" >/dev/null && echo "revoked $ID"
aws s3api get-object --bucket reports --key q1/summary.txt /dev/stdout 2>&1 | tail -1 || true

step "8. The auditor: verify the log offline, then read the task's transcript"
sleep 1.2   # let the gateway seal a checkpoint over the tail
"$BIN/custody-verify" "$WORK/data/log" --key "$WORK/data/log.vkey"
"$BIN/custody-verify" query "$WORK/data/log" --task q1-report
