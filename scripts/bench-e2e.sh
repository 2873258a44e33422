#!/usr/bin/env bash
# Benchmark: snf-mkimage end to end with the default operations (sysprep, shrink, free
# space left out, dump + MD5) on the Debian 12 guest, against the floor: copying the
# source with `cp --sparse=always` plus an MD5 pass over the output. One run each,
# printed as a ratio. Beside it, virt-sysprep + virt-sparsify on a copy, where they are
# installed.
#
# Targets: time at most 1.5x the floor; output allocation no larger than the guest's
# used data (allocated blocks of its filesystems) plus 5%.
#
# Usage: scripts/bench-e2e.sh [GUEST_DIR [mbr|gpt|lvm]]
#   GUEST_DIR defaults to $SNF_TEST_GUEST_DIR or target/test-guest (built if missing).
#   lvm: the guest whose root is an LV (debian12-lvm.raw): the PV is shrunk, the swap LV
#   kept.
# Needs root only to build the guest. Leaves nothing behind.
set -euo pipefail
cd "$(dirname "$0")/.."
GUEST_DIR=${1:-${SNF_TEST_GUEST_DIR:-target/test-guest}}
TABLE=${2:-mbr}
[ -f "$GUEST_DIR/debian12-$TABLE.raw" ] || bash scripts/guest/build-debian.sh "$GUEST_DIR"
SRC=$GUEST_DIR/debian12-$TABLE.raw
WORK=$(mktemp -d /var/tmp/bench-e2e.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

cargo build --release -q -p snf-mkimage
BIN=target/release/snf-mkimage

now() { date +%s.%N; }
calc() { python3 -c "print($1)"; }
alloc() { echo $(($(stat -c %b "$1") * $(stat -c %B "$1"))); }
mib() { calc "f'{$1 / 1048576:.0f} MiB'"; }

# Used data of the guest: allocated blocks of every ext filesystem (e2fsprogs' view), in
# the partitions and, on the LVM guest, in the root LV (its first extent is the PV's
# first, see build-debian.sh; guest.json has pe_start).
fs_offsets() {
    sfdisk -J "$SRC" | python3 -c 'import json,sys
for p in json.load(sys.stdin)["partitiontable"]["partitions"]: print(p["start"] * 512)'
    if [ "$TABLE" = lvm ]; then
        python3 - "$GUEST_DIR/guest.json" "$SRC" <<'EOF'
import json, subprocess, sys
lvm = json.load(open(sys.argv[1]))["images"]["lvm"]
table = json.loads(subprocess.run(["sfdisk", "-J", sys.argv[2]], check=True,
                                  capture_output=True).stdout)["partitiontable"]
pv = table["partitions"][lvm["pv_partition"] - 1]
print(pv["start"] * 512 + lvm["pe_start"])
EOF
    fi
}
used=0
while read -r offset; do
    spec="$SRC?offset=$offset"
    if info=$(tune2fs -l "$spec" 2>/dev/null); then
        bc_=$(awk -F: '/^Block count/ {print $2+0}' <<<"$info")
        fb=$(awk -F: '/^Free blocks/ {print $2+0}' <<<"$info")
        bs=$(awk -F: '/^Block size/ {print $2+0}' <<<"$info")
        used=$((used + (bc_ - fb) * bs))
    fi
done < <(fs_offsets)

# Both runs start with the source in the page cache (the first read of a cold image
# would otherwise be charged to whichever runs first).
cp --sparse=always "$SRC" "$WORK/warm.raw"
rm -f "$WORK/warm.raw"
sync
echo "source: $SRC ($(mib "$(stat -c %s "$SRC")"), $(mib "$(alloc "$SRC")") allocated, $(mib "$used") used by its filesystems)"

# Ours.
sync
T0=$(now)
"$BIN" -s --tmpdir "$WORK" -o "$WORK/out.raw" "$SRC" >/dev/null 2>"$WORK/ours.log" || {
    cat "$WORK/ours.log" >&2
    exit 1
}
T1=$(now)
ours=$(calc "$T1 - $T0")
out_alloc=$(alloc "$WORK/out.raw")
echo "snf-mkimage: $(calc "f'{$ours:.2f}'") s; output $(mib "$(stat -c %s "$WORK/out.raw")"), $(mib "$out_alloc") allocated"

# The floor: the same bytes copied and hashed once.
sync
T0=$(now)
cp --sparse=always "$SRC" "$WORK/floor.raw"
T1=$(now)
md5sum "$WORK/out.raw" >/dev/null
T2=$(now)
cp_t=$(calc "$T1 - $T0")
md5_t=$(calc "$T2 - $T1")
floor=$(calc "$cp_t + $md5_t")
rm -f "$WORK/floor.raw"
echo "floor: $(calc "f'{$floor:.2f}'") s (cp --sparse=always $(calc "f'{$cp_t:.2f}'") s + md5sum of the output $(calc "f'{$md5_t:.2f}'") s)"

ratio=$(calc "f'{$ours / $floor:.2f}'")
size_ratio=$(calc "f'{$out_alloc / $used:.2f}'")
verdict() { if python3 -c "import sys; sys.exit(0 if $1 else 1)"; then echo met; else echo MISSED; fi; }
echo "time ratio: ${ratio}x the floor (target <= 1.5x: $(verdict "$ratio <= 1.5"))"
echo "size: output allocates ${size_ratio}x the used data (target <= 1.05x: $(verdict "$size_ratio <= 1.05"))"

peer_run() {
    cp --sparse=always "$SRC" "$WORK/peer.raw" &&
        virt-sysprep -q --format raw -a "$WORK/peer.raw" >"$WORK/peer.log" 2>&1 &&
        virt-sparsify -q --in-place --format raw "$WORK/peer.raw" >>"$WORK/peer.log" 2>&1 &&
        md5sum "$WORK/peer.raw" >/dev/null
}
if command -v virt-sysprep >/dev/null && command -v virt-sparsify >/dev/null; then
    # The peer needs a libguestfs appliance: KVM if it works, else TCG (nested KVM often
    # fails to start or hangs the kernel: scripts/kvm-works.sh); a failure is reported,
    # not fatal.
    how="KVM or libguestfs default"
    if ! "$(dirname "$0")/kvm-works.sh"; then
        export LIBGUESTFS_BACKEND=direct LIBGUESTFS_BACKEND_SETTINGS=force_tcg
        how="appliance under TCG"
    fi
    T0=$(now)
    if ! peer_run; then
        how=
        if [ -z "${LIBGUESTFS_BACKEND_SETTINGS:-}" ]; then
            export LIBGUESTFS_BACKEND=direct LIBGUESTFS_BACKEND_SETTINGS=force_tcg
            how="appliance under TCG"
            T0=$(now)
            peer_run || how=
        fi
    fi
    T1=$(now)
    if [ -n "$how" ]; then
        peer=$(calc "$T1 - $T0")
        echo "virt-sysprep + virt-sparsify ($how; copy, prepare, sparsify, md5): $(calc "f'{$peer:.2f}'") s, $(calc "f'{$peer / $floor:.2f}'")x the floor; output $(mib "$(alloc "$WORK/peer.raw")") allocated, not shrunk"
    else
        echo "virt-sysprep + virt-sparsify: failed ($(grep -v '^\s*$' "$WORK/peer.log" | head -1))"
    fi
else
    echo "virt-sysprep/virt-sparsify: not installed (peer run skipped)"
fi
