#!/usr/bin/env bash
# Run Custody's whole test suite: unit, property, SigV4 suite and end-to-end tests
# against real peers (moto_server, boto3, the aws CLI). Installs the Python peers with
# pip when they are missing. Usage: ./scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-test-peers.sh

# End-to-end tests each start their own peers; two test threads fit a 2-core machine.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-2}"
exec cargo test --workspace --no-fail-fast "$@"
