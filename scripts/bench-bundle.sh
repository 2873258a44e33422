#!/usr/bin/env bash
# Benchmark: host bundling against a tar pipeline, side by side, on the Debian 12 guest
# (GPT image, about 1 GB used) attached read-only and mounted like a running system.
#
#   tar:  mke2fs + mount of a fresh ext4, then
#         tar -C ROOT -cf - --one-file-system . | tar -C TARGET -xf -
#   ours: snf-mkimage --no-sysprep --print-metadata / with SNF_HOST_ROOT=ROOT, which
#         bundles (table, mke2fs, file copy) and inspects, and writes no output.
#
# The tree is read once first so that both start from a warm page cache. Target: ours
# at most 1.5 times tar. Prints both times and the ratio.
#
# Usage: sudo scripts/bench-bundle.sh [GUEST_DIR]
#   GUEST_DIR defaults to $SNF_TEST_GUEST_DIR or target/test-guest (built if missing).
# Needs root. Leaves nothing behind.
set -euo pipefail
cd "$(dirname "$0")/.."
GUEST_DIR=${1:-${SNF_TEST_GUEST_DIR:-target/test-guest}}
[ -f "$GUEST_DIR/debian12-gpt.raw" ] || bash scripts/guest/build-debian.sh "$GUEST_DIR"
SRC=$GUEST_DIR/debian12-gpt.raw
WORK=$(mktemp -d /var/tmp/bench-bundle.XXXXXX)
LOOP=
cleanup() {
    umount "$WORK/tar" 2>/dev/null || true
    umount "$WORK/root" 2>/dev/null || true
    [ -n "$LOOP" ] && losetup -d "$LOOP"
    rm -rf "$WORK"
}
trap cleanup EXIT

cargo build --release -q -p snf-mkimage
BIN=target/release/snf-mkimage

LOOP=$(losetup -r -P -f --show "$SRC")
partx -a "$LOOP" 2>/dev/null || true # this kernel's losetup -P makes no partition devices
mkdir -p "$WORK/root" "$WORK/tar" "$WORK/tmp"
mount -o ro,noload "${LOOP}p2" "$WORK/root"
USED=$(df -B1 --output=used "$WORK/root" | tail -1)
echo "tree: $SRC partition 2, $((USED >> 20)) MiB used"
tar -C "$WORK/root" -cf - --one-file-system . >/dev/null # warm the cache

now() { date +%s.%N; }
t0=$(now)
truncate -s 3G "$WORK/tar.img"
mke2fs -q -F -t ext4 "$WORK/tar.img"
mount -o loop "$WORK/tar.img" "$WORK/tar"
tar -C "$WORK/root" -cf - --one-file-system . | tar -C "$WORK/tar" -xf -
umount "$WORK/tar"
t1=$(now)
rm -f "$WORK/tar.img"

t2=$(now)
SNF_HOST_ROOT="$WORK/root" "$BIN" -s --no-sysprep --print-metadata --tmpdir "$WORK/tmp" / >/dev/null
t3=$(now)

TAR=$(echo "$t1 - $t0" | bc -l)
OURS=$(echo "$t3 - $t2" | bc -l)
printf 'tar pipeline: %.2f s\nsnf-mkimage /: %.2f s\nratio: %.2f (target <= 1.5)\n' \
    "$TAR" "$OURS" "$(echo "$OURS / $TAR" | bc -l)"
