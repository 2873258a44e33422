#!/bin/bash
# with-openstack.sh CMD [ARGS...]
#
# Runs CMD with a real single-node OpenStack (Keystone v3, Swift, Glance v2 on
# 127.0.0.1, from Debian's packages) and its credentials in the environment:
# starts the services (installing the packages on first use; idempotent), sources
# the openrc (OS_AUTH_URL, OS_USERNAME=tester, ...), exports the credentials of the
# second project and of the admin for the visibility tests, runs CMD, and stops
# exactly the services this run started (nothing if they were already running).
#
#   scripts/with-openstack.sh cargo test -p snf-cloud --test openstack
#
# Environment: OPENSTACK_STATE_DIR (default /var/tmp/snf-openstack), plus the knobs
# of scripts/openstack/start-openstack.sh. SNF_OPENSTACK_KEEP=1 leaves them running.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
STATE=${OPENSTACK_STATE_DIR:-/var/tmp/snf-openstack}
[ $# -gt 0 ] || { echo "usage: $0 CMD [ARGS...]" >&2; exit 2; }

# What was running before us is left alone.
was_running=0
if [ -d "$STATE/run" ]; then
    for f in "$STATE"/run/*.pid; do
        [ -s "$f" ] || continue
        pid=$(cat "$f")
        if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$STATE/"; then
            was_running=1
        fi
    done
fi

stop() {
    if [ "$was_running" = 0 ] && [ "${SNF_OPENSTACK_KEEP:-0}" != 1 ]; then
        "$here/openstack/stop-openstack.sh" "$STATE" >&2 || true
    fi
}
trap stop EXIT

"$here/openstack/start-openstack.sh" "$STATE" >&2
# shellcheck disable=SC1091
. "$STATE/openrc"
export SNF_TEST_OTHER_USERNAME=tester2 SNF_TEST_OTHER_PASSWORD=testing2 SNF_TEST_OTHER_PROJECT=test2
export SNF_TEST_ADMIN_USERNAME=admin SNF_TEST_ADMIN_PROJECT=admin
SNF_TEST_ADMIN_PASSWORD=$(sed -n 's/^export OS_PASSWORD=//p' "$STATE/openrc-admin")
export SNF_TEST_ADMIN_PASSWORD
"$@"
