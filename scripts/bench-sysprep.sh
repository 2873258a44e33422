#!/usr/bin/env bash
# Benchmark: all default system preparation operations (shrink excluded) on the Debian 12
# guest image, through the ext backend; virt-sysprep on a copy of the same image beside
# it where virt-sysprep is installed. Target: under one second for ours.
#
# Usage: scripts/bench-sysprep.sh [GUEST_DIR]   (default: target/guest, built if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
GUEST_DIR=${1:-target/guest}
[ -f "$GUEST_DIR/debian12-mbr.raw" ] || scripts/guest/build-debian.sh "$GUEST_DIR"
SRC=$GUEST_DIR/debian12-mbr.raw
WORK=$(mktemp -d /var/tmp/bench-sysprep.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

cargo build --release -q -p image-creator --example bench_sysprep
BIN=target/release/examples/bench_sysprep

# Root = partition 1 of the MBR image.
START=$(sfdisk -J "$SRC" | python3 -c 'import json,sys; t=json.load(sys.stdin)["partitiontable"]; print(t["partitions"][0]["start"] * t.get("sectorsize", 512))')
cp --sparse=always "$SRC" "$WORK/ours.raw"
UUID=$(blkid -p -O "$START" -s UUID -o value "$WORK/ours.raw" || true)
echo "image: $SRC (root at byte $START, UUID ${UUID:-?})"
"$BIN" "$WORK/ours.raw" "$START" $UUID | sed 's/^/snf-image-creator /'
e2fsck -fn "$WORK/ours.raw?offset=$START" >/dev/null 2>&1 && echo "e2fsck -fn: clean" || echo "e2fsck -fn: PROBLEMS"

if command -v virt-sysprep >/dev/null; then
    cp --sparse=always "$SRC" "$WORK/peer.raw"
    T0=$(date +%s.%N)
    virt-sysprep -q --format raw -a "$WORK/peer.raw" >/dev/null
    T1=$(date +%s.%N)
    python3 -c "print(f\"virt-sysprep: {$T1 - $T0:.3f} s\")"
else
    echo "virt-sysprep: not installed (peer timing skipped)"
fi
