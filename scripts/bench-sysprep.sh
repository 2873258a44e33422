#!/usr/bin/env bash
# Benchmark: all default system preparation operations (shrink excluded) on the Debian 12
# guest image, through the ext backend; virt-sysprep on a copy of the same image beside
# it where virt-sysprep is installed. Target: under one second for ours.
#
# Ours runs RUNS times (default 3), each on a fresh sparse copy in /var/tmp (a real
# disk, so the fsyncs of the scrubs count), and the median is the figure. One more run
# on a copy in /dev/shm, where fsync costs nothing, shows the work itself.
#
# Usage: scripts/bench-sysprep.sh [GUEST_DIR]
#   GUEST_DIR defaults to $SNF_TEST_GUEST_DIR or target/test-guest (built if missing).
# Needs root only to build the guest. Leaves nothing behind.
set -euo pipefail
cd "$(dirname "$0")/.."
GUEST_DIR=${1:-${SNF_TEST_GUEST_DIR:-target/test-guest}}
RUNS=${RUNS:-3}
[ -f "$GUEST_DIR/debian12-mbr.raw" ] || bash scripts/guest/build-debian.sh "$GUEST_DIR"
SRC=$GUEST_DIR/debian12-mbr.raw
WORK=$(mktemp -d /var/tmp/bench-sysprep.XXXXXX)
SHM=
cleanup() { rm -rf "$WORK" ${SHM:+"$SHM"}; }
trap cleanup EXIT

cargo build --release -q -p image-creator --example bench_sysprep
BIN=target/release/examples/bench_sysprep

# Root = partition 1 of the MBR image.
START=$(sfdisk -J "$SRC" | python3 -c 'import json,sys; t=json.load(sys.stdin)["partitiontable"]; print(t["partitions"][0]["start"] * t.get("sectorsize", 512))')
UUID=$(blkid -p -O "$START" -s UUID -o value "$SRC" || true)
echo "image: $SRC (root at byte $START, UUID ${UUID:-?})"

# run_ours DIR: time one run on a fresh copy in DIR, print the seconds, check the result.
run_ours() {
    local copy=$1/ours.raw line
    cp --sparse=always "$SRC" "$copy"
    line=$("$BIN" "$copy" "$START" ${UUID:+"$UUID"})
    e2fsck -fn "$copy?offset=$START" >/dev/null 2>&1 || {
        echo "e2fsck -fn: PROBLEMS after: $line" >&2
        exit 1
    }
    rm -f "$copy"
    sed -n 's/^sysprep: \([0-9.]*\) s.*/\1/p' <<<"$line"
    echo "  $line (e2fsck -fn clean)" >&2
}

times=()
for _ in $(seq "$RUNS"); do
    times+=("$(run_ours "$WORK")")
done
python3 -c "import statistics,sys; t=[float(x) for x in sys.argv[1:]]; print(f'snf-image-creator: {statistics.median(t):.3f} s median of {len(t)} runs (min {min(t):.3f}, max {max(t):.3f}); target < 1 s')" "${times[@]}"

if [ -d /dev/shm ] && [ "$(df --output=avail -B1 /dev/shm | tail -1)" -gt $((2 * $(du -B1 "$SRC" | cut -f1))) ]; then
    SHM=$(mktemp -d /dev/shm/bench-sysprep.XXXXXX)
    echo "snf-image-creator on tmpfs (no fsync cost): $(run_ours "$SHM") s"
fi

# virt-sysprep: total wall time (appliance start included) and, from its own progress
# timestamps, the operations alone. Where KVM cannot run its appliance (nested KVM that
# refuses qemu's -cpu host or hangs the kernel: scripts/kvm-works.sh), it runs under
# TCG, and the line says so.
peer() { # peer LABEL [ENV...]
    local label=$1 log=$WORK/peer.log t0 t1
    shift
    cp --sparse=always "$SRC" "$WORK/peer.raw"
    t0=$(date +%s.%N)
    if ! env "$@" virt-sysprep --format raw -a "$WORK/peer.raw" >"$log" 2>&1; then
        rm -f "$WORK/peer.raw"
        return 1
    fi
    t1=$(date +%s.%N)
    rm -f "$WORK/peer.raw"
    python3 - "$label" "$t0" "$t1" "$log" <<'PY'
import re, sys
label, t0, t1, log = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
stamps = [float(m.group(1)) for m in re.finditer(r"^\[\s*([0-9.]+)\] Performing", open(log).read(), re.M)]
ops = f", operations alone {stamps[-1] - stamps[0]:.1f} s" if len(stamps) > 1 else ""
print(f"virt-sysprep{label}: {t1 - t0:.1f} s total (appliance start included{ops})")
PY
}
if command -v virt-sysprep >/dev/null; then
    if "$(dirname "$0")/kvm-works.sh"; then
        peer "" || peer " (TCG: KVM refused the appliance)" LIBGUESTFS_BACKEND_SETTINGS=force_tcg
    else
        peer " (TCG: KVM cannot run the appliance here)" LIBGUESTFS_BACKEND=direct LIBGUESTFS_BACKEND_SETTINGS=force_tcg
    fi || { echo "virt-sysprep: failed:"; tail -5 "$WORK/peer.log"; }
else
    echo "virt-sysprep: not installed (peer timing skipped; apt-get install guestfs-tools and a kernel)"
fi
