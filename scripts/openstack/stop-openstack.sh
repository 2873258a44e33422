#!/bin/bash
# stop-openstack.sh [STATE_DIR] [--purge]
# Stops the services that start-openstack.sh started, by the PIDs it recorded
# in STATE_DIR/run (default /var/tmp/snf-openstack). A PID is only signalled if
# that process is alive and its command line still names STATE_DIR (so a
# recycled PID is never hit). --purge also deletes STATE_DIR afterwards.
set -uo pipefail

STATE= PURGE=0
for a in "$@"; do
    case $a in --purge) PURGE=1;; *) STATE=$a;; esac
done
STATE=${STATE:-${OPENSTACK_STATE_DIR:-/var/tmp/snf-openstack}}
[ -d "$STATE/run" ] || { echo "no $STATE/run: nothing to stop"; exit 0; }
STATE=$(cd "$STATE" && pwd)
RUN=$STATE/run

ours() {  # ours PID: alive and started for this state dir
    kill -0 "$1" 2>/dev/null && tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null | grep -q -- "$STATE/"
}

pids=() names=() kids=()
# front ends first, memcached last
for name in glance keystone swift-proxy swift-object swift-container swift-account memcached; do
    f=$RUN/$name.pid
    [ -s "$f" ] || continue
    pid=$(cat "$f")
    if ours "$pid"; then
        # children (uwsgi workers) too, in case the parent has to be SIGKILLed
        kids+=($(pgrep -P "$pid" || true))
        kill -TERM "$pid" 2>/dev/null && { pids+=("$pid"); names+=("$name"); }
    else
        echo "$name: pid $pid not running (stale pid file)"
        rm -f "$f"
    fi
done

end=$(( $(date +%s) + 15 ))
for i in "${!pids[@]}"; do
    pid=${pids[$i]}
    while ours "$pid" && [ "$(date +%s)" -lt "$end" ]; do sleep 0.2; done
    if ours "$pid"; then
        echo "${names[$i]}: pid $pid ignored SIGTERM, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null
        sleep 0.5
    fi
    echo "${names[$i]}: stopped (pid $pid)"
    rm -f "$RUN/${names[$i]}.pid"
done
for pid in "${kids[@]}"; do
    if ours "$pid"; then kill -KILL "$pid" 2>/dev/null && echo "killed leftover child $pid"; fi
done

if [ "$PURGE" = 1 ]; then
    rm -rf "$STATE"
    echo "removed $STATE"
fi
exit 0
