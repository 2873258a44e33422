#!/usr/bin/env bash
# Run the whole test suite the way CI does: install what is missing, build the Debian
# test guest once (cached under target/), start the local OpenStack servers the cloud
# tests talk to (stopped again on exit), then every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
exec scripts/with-openstack.sh cargo test --workspace --all-targets --no-fail-fast "$@"
