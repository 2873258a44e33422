#!/usr/bin/env bash
# Self-test of the real-guest infrastructure: build the Debian guests, boot both, and
# do a deploy round trip on each after imitating what snf-mkimage's shrink does
# (remove the trailing swap partition, drop its fstab line, cut the image to the last
# partition's end + 1 MiB), then boot the deployed disk.
#
# Usage: selftest.sh [OUTDIR]   (default: target/test-guest of the workspace)
set -euo pipefail
HERE=$(dirname "$(realpath "${BASH_SOURCE[0]}")")
OUTDIR=${1:-$HERE/../../target/test-guest}
# shellcheck source=lib.sh
. "$HERE/lib.sh"

t() { local s; s=$(date +%s.%N); "$@"; echo "selftest: '$*' took $(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $s}") s" >&2; }

t "$HERE/build-debian.sh" "$OUTDIR"
t "$HERE/boot-check.sh" "$OUTDIR/debian12-mbr.raw" 300
t "$HERE/boot-check.sh" "$OUTDIR/debian12-gpt.raw" 300

WORK=$(mktemp -d /var/tmp/snf-selftest.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# drop_swap_line IMAGE ROOTPART: what the remove-swap-entry sysprep does.
drop_swap_line() {
    local loop mnt
    loop=$(attach_loop "$1")
    mnt=$WORK/mnt
    mkdir -p "$mnt"
    mount "${loop}p$2" "$mnt"
    sed -i '/[[:space:]]swap[[:space:]]/d' "$mnt/etc/fstab"
    umount "$mnt"
    detach_loop "$loop"
}

# MBR: p2 (swap) removed, cut to p1 end + 1 MiB.
cp --sparse=always "$OUTDIR/debian12-mbr.raw" "$WORK/mbr.raw"
swap_mib=$(($(sfdisk -J "$WORK/mbr.raw" | jq '.partitiontable.partitions[1].size') / 2048))
drop_swap_line "$WORK/mbr.raw" 1
sfdisk -q --delete "$WORK/mbr.raw" 2
end=$(sfdisk -J "$WORK/mbr.raw" | jq '.partitiontable.partitions[0] | .start + .size')
truncate -s $(((end + 2048) * 512)) "$WORK/mbr.raw"
printf '{"properties":{"OSFAMILY":"linux","ROOT_PARTITION":"1","SWAP":"2:%s","USERS":"root user"},"disk-format":"diskdump"}\n' \
    "$swap_mib" >"$WORK/mbr.meta"
t "$HERE/deploy.sh" "$WORK/mbr.raw" "$WORK/mbr.meta" "$WORK/mbr-vm.raw" 4G
sfdisk -l "$WORK/mbr-vm.raw" >&2
t "$HERE/boot-check.sh" "$WORK/mbr-vm.raw" 300

# GPT: p3 (swap) removed, cut to p2 end + 1 MiB without moving the backup header
# (the case snf-image's sgdisk --move-second-header must repair).
cp --sparse=always "$OUTDIR/debian12-gpt.raw" "$WORK/gpt.raw"
drop_swap_line "$WORK/gpt.raw" 2
sgdisk -d 3 "$WORK/gpt.raw" >/dev/null
end=$(sfdisk -J "$WORK/gpt.raw" | jq '.partitiontable.partitions[1] | .start + .size')
truncate -s $(((end + 2048) * 512)) "$WORK/gpt.raw"
printf '{"properties":{"OSFAMILY":"linux","ROOT_PARTITION":"2","SWAP":"3:%s"},"disk-format":"diskdump"}\n' \
    "$swap_mib" >"$WORK/gpt.meta"
t "$HERE/deploy.sh" "$WORK/gpt.raw" "$WORK/gpt.meta" "$WORK/gpt-vm.raw" 4G
sgdisk -p "$WORK/gpt-vm.raw" >&2
t "$HERE/boot-check.sh" "$WORK/gpt-vm.raw" 300
echo "selftest: all passed" >&2
