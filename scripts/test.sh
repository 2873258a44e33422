#!/usr/bin/env bash
# Run the whole test suite the way CI does: install what is missing, start the local
# OpenStack servers the cloud tests talk to (stopped again on exit), build the Debian
# guest once (cached under target/), then every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
export SNF_TEST_GUEST_DIR="${SNF_TEST_GUEST_DIR:-$PWD/target/test-guest}"
exec cargo test --workspace --all-targets --no-fail-fast "$@"
