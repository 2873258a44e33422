#!/usr/bin/env bash
# Simulate what snf-image's helper does when it deploys a diskdump image to a VM disk
# (FixPartitionTable, FilesystemResizeUnmounted, MountImage checks, AddSwap), so the
# end-to-end tests can prove an image made by snf-mkimage deploys and boots.
#
# Usage: deploy.sh IMAGE META_JSON OUT_DISK SIZE
#
#   IMAGE      diskdump (raw disk) image; never modified
#   META_JSON  the image's .meta file ({"properties": {...}, "disk-format": "diskdump"})
#              or a bare properties object
#   OUT_DISK   the VM disk to create (a sparse file; overwritten)
#   SIZE       its size, as truncate(1) takes it (e.g. 4G); not smaller than IMAGE
#
# Steps, as snf-image does them:
#   1. copy IMAGE to the start of OUT_DISK, grow OUT_DISK to SIZE (sparse)
#   2. GPT: sgdisk --move-second-header
#   3. grow the last partition to end 2048 sectors before the disk end, or before the
#      swap area when SWAP=<num>:<MiB> is set; msdos with a logical last partition:
#      grow the extended partition first
#   4. ext2/3/4 on the grown partition: require "Filesystem state: clean" (fail
#      otherwise), e2fsck -p, resize2fs -f
#   5. SWAP: create partition <num> of <MiB> MiB at the disk end (num >= 5 on msdos:
#      inside a new extended partition), mkswap it
#   6. mount ROOT_PARTITION: require /etc; Linux: fail on an fstab entry that does not
#      use UUID=/LABEL= (snf-image's "non-persistent block device names"); add the
#      swap line with the new UUID
# Exit 0 on success, 1 on a deploy failure (message on stderr), 2 on bad arguments.
# Needs root (loop devices, mount). Sector size 512.
set -euo pipefail

usage() { echo "usage: $0 IMAGE META_JSON OUT_DISK SIZE" >&2; exit 2; }
[ $# -eq 4 ] || usage
IMAGE=$1 META=$2 OUT=$3 SIZE=$4
HERE=$(dirname "$(realpath "${BASH_SOURCE[0]}")")
# shellcheck source=lib.sh
. "$HERE/lib.sh"

fail() { echo "deploy.sh: $*" >&2; exit 1; }
say() { echo "deploy.sh: $*" >&2; }

[ "$(id -u)" -eq 0 ] || fail "needs root (loop devices, mount)"
for tool in jq sfdisk sgdisk partx losetup tune2fs e2fsck resize2fs mkswap blkid; do
    command -v "$tool" >/dev/null || fail "$tool not found (run scripts/setup.sh)"
done
[ -f "$IMAGE" ] || { echo "deploy.sh: $IMAGE: no such image file" >&2; exit 2; }
[ -f "$META" ] || { echo "deploy.sh: $META: no such metadata file" >&2; exit 2; }
jq -e 'type == "object"' "$META" >/dev/null 2>&1 || fail "$META: not a JSON object"

# ---- properties (names are case-insensitive for snf-image) ------------------------------
fmt=$(jq -r '."disk-format" // "diskdump"' "$META")
[ "$fmt" = diskdump ] || fail "$META: disk-format is '$fmt', only diskdump is deployable here"
declare -A PROP=()
while IFS= read -r -d '' kv; do
    PROP[${kv%%=*}]=${kv#*=}
done < <(jq -j '(if has("properties") then .properties else . end) | to_entries[]
                | "\(.key | ascii_upcase)=\(.value | tostring)\u0000"' "$META")
prop() { echo "${PROP[$1]:-}"; }

OSFAMILY=$(prop OSFAMILY)
case "$OSFAMILY" in
    ""|linux|windows|windows-legacy|freebsd|netbsd|openbsd) ;;
    *) fail "OSFAMILY '$OSFAMILY' is not one snf-image knows" ;;
esac
swap_num=0 swap_mib=0
if [ -n "$(prop SWAP)" ]; then
    if [[ "$(prop SWAP)" =~ ^([1-9][0-9]*):([1-9][0-9]*)$ ]]; then
        swap_num=${BASH_REMATCH[1]} swap_mib=${BASH_REMATCH[2]}
    elif [[ "$(prop SWAP)" =~ ^[A-Za-z]$ ]]; then
        fail "SWAP=$(prop SWAP) (a whole extra disk) is not simulated here"
    else
        fail "SWAP property '$(prop SWAP)' is not valid"
    fi
fi

# ---- 1. write the image to the bigger disk ---------------------------------------------
img_bytes=$(stat -c %s "$IMAGE")
rm -f "$OUT"
truncate -s "$SIZE" "$OUT" || { echo "deploy.sh: bad SIZE '$SIZE'" >&2; exit 2; }
disk_bytes=$(stat -c %s "$OUT")
[ "$disk_bytes" -ge "$img_bytes" ] || fail "disk size $disk_bytes is smaller than image $IMAGE ($img_bytes bytes)"
[ $((disk_bytes % 512)) -eq 0 ] || fail "disk size $disk_bytes is not a multiple of 512"
dd if="$IMAGE" of="$OUT" bs=4M conv=sparse,notrunc status=none
N=$((disk_bytes / 512))

LOOP='' MNT=''
cleanup() {
    local rc=$?
    set +e
    [ -n "$MNT" ] && { mountpoint -q "$MNT" && umount "$MNT"; rmdir "$MNT"; }
    [ -n "$LOOP" ] && detach_loop "$LOOP"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- 2. partition table ----------------------------------------------------------------
label=$(sfdisk --dump "$OUT" 2>/dev/null | awk '/^label:/ {print $2}') || true
case "$label" in
    gpt)
        # A shrunk image has its backup header inside the image, not at the disk end.
        sgdisk --move-second-header "$OUT" >/dev/null 2>&1 || fail "sgdisk --move-second-header failed on $OUT"
        ;;
    dos) ;;
    "") fail "$IMAGE: no partition table found" ;;
    *) fail "$IMAGE: unsupported partition table type '$label' (only msdos and gpt)" ;;
esac
[ "$(prop OSFAMILY)" != freebsd ] || [ "$label" = gpt ] || fail "FreeBSD images need GPT"

# part_table: "num start size type" lines sorted by number (sfdisk names the nodes
# OUT1, OUT5 or OUTp1 when OUT ends in a digit).
part_table() {
    sfdisk -J "$OUT" | jq -r --arg dev "$OUT" '.partitiontable.partitions[]
        | "\(.node | ltrimstr($dev) | ltrimstr("p")) \(.start) \(.size) \(.type)"' | sort -n
}
mapfile -t parts < <(part_table)
[ ${#parts[@]} -gt 0 ] || fail "$IMAGE: the partition table has no partitions"
field() { # field NUM COLUMN (1=num 2=start 3=size 4=type); fails when NUM is absent
    local p a
    for p in "${parts[@]}"; do
        read -ra a <<<"$p"
        if [ "${a[0]}" = "$1" ]; then echo "${a[$(($2 - 1))]}"; return 0; fi
    done
    return 1
}
last_num=$(echo "${parts[-1]}" | cut -d' ' -f1)
last_end=0
for p in "${parts[@]}"; do
    read -r _ s z _ <<<"$p"
    [ $((s + z - 1)) -gt "$last_end" ] && last_end=$((s + z - 1))
done
is_extended() { case "$(field "$1" 4)" in 5|f|85) return 0 ;; esac; return 1; }

# parted's "-2049s": the last partition ends 2048 sectors before the disk end.
new_end=$((N - 2049))
if [ "$swap_num" -ne 0 ]; then
    free=$((N - 1 - last_end))
    [ "$free" -gt $((swap_mib * 2048)) ] || fail "not enough space for swap partition ($swap_mib MiB, $((free / 2048)) MiB free)"
    swap_end=$new_end
    swap_start=$((new_end - swap_mib * 2048 + 1))
    new_end=$((swap_start - 1))
    if [ -n "$(field "$swap_num" 1 || true)" ]; then
        fail "SWAP=$(prop SWAP): partition $swap_num already exists"
    fi
fi

resize_to() { # resize_to NUM END
    local num=$1 end=$2 start
    start=$(field "$num" 2)
    [ "$end" -gt "$start" ] || fail "partition $num would end before it starts"
    echo "$start,$((end - start + 1))" |
        sfdisk -q --no-reread --no-tell-kernel -N "$num" "$OUT" >/dev/null 2>&1 ||
        fail "sfdisk could not move the end of partition $num to sector $end"
}

extended=
if [ "$label" = dos ]; then
    for p in "${parts[@]}"; do
        n=${p%% *}
        is_extended "$n" && extended=$n
    done
fi
resize_part=$last_num
if [ "$label" = dos ] && [ "$last_num" -gt 4 ]; then
    last_primary=0
    for p in "${parts[@]}"; do n=${p%% *}; [ "$n" -le 4 ] && last_primary=$n; done
    if [ "$extended" != "$last_primary" ]; then
        # The logicals are not at the disk end: the last primary is.
        resize_part=$last_primary
    elif [ "$swap_num" -ge 5 ]; then
        # Logical partitions need a gap before them: keep 2048 sectors for the swap's EBR.
        new_end=$((new_end - 2048))
        resize_to "$extended" "$swap_end"
    else
        resize_to "$extended" "$new_end"
    fi
elif [ "$label" = dos ] && is_extended "$last_num"; then
    fail "the last partition ($last_num) is an empty extended partition"
elif [ "$label" = dos ] && [ "$swap_num" -ge 5 ]; then
    # Room for the new extended partition's first EBR, aligned.
    new_end=$((new_end - 2048))
fi
say "growing partition $resize_part to end at sector $new_end of $N"
resize_to "$resize_part" "$new_end"

if [ "$swap_num" -ne 0 ]; then
    say "creating swap partition $swap_num: sectors $swap_start-$swap_end ($swap_mib MiB)"
    if [ "$label" = gpt ]; then
        sgdisk -n "$swap_num:$swap_start:$swap_end" -t "$swap_num:8200" -c "$swap_num:swap" "$OUT" >/dev/null ||
            fail "sgdisk could not add swap partition $swap_num"
    elif [ "$swap_num" -ge 5 ]; then
        if [ -z "$extended" ]; then
            ext_num=
            for n in 1 2 3 4; do field "$n" 1 >/dev/null || { ext_num=$n; break; }; done
            [ -n "$ext_num" ] || fail "no free primary slot for the extended partition"
            echo "$((swap_start - 2048)),$((swap_end - swap_start + 2049)),5" |
                sfdisk -q --no-reread --no-tell-kernel -N "$ext_num" "$OUT" >/dev/null 2>&1 ||
                fail "sfdisk could not add extended partition $ext_num"
        fi
        echo "$swap_start,$((swap_end - swap_start + 1)),82" |
            sfdisk -q --no-reread --no-tell-kernel --append "$OUT" >/dev/null 2>&1 ||
            fail "sfdisk could not add logical swap partition"
    else
        echo "$swap_start,$((swap_end - swap_start + 1)),82" |
            sfdisk -q --no-reread --no-tell-kernel -N "$swap_num" "$OUT" >/dev/null 2>&1 ||
            fail "sfdisk could not add swap partition $swap_num"
    fi
    mapfile -t parts < <(part_table)
    [ "$(field "$swap_num" 2 || true)" = "$swap_start" ] ||
        fail "swap partition did not get number $swap_num (table: ${parts[*]})"
fi

# ---- 4. filesystem resize ---------------------------------------------------------------
LOOP=$(attach_loop "$OUT") || fail "cannot attach $OUT to a loop device"
dev=${LOOP}p$resize_part
fstype=$(blkid -p -s TYPE -o value "$dev" 2>/dev/null || true)
if [[ "$fstype" == ext[234] ]]; then
    state=$(tune2fs -l "$dev" | sed -n 's/^Filesystem state: *//p')
    [ "$state" = clean ] || fail "the file system state of partition $resize_part is not clean (state = $state)"
    rc=0; e2fsck -p "$dev" >/dev/null 2>&1 || rc=$?
    [ $rc -le 1 ] || fail "e2fsck -p on partition $resize_part failed (exit $rc)"
    resize2fs -f "$dev" >/dev/null 2>&1 || fail "resize2fs -f on partition $resize_part failed"
    say "resized $fstype on partition $resize_part"
else
    say "warning: don't know how to resize partition $resize_part with file system '${fstype:-none}'"
fi

# ---- 5/6. swap and the root filesystem --------------------------------------------------
swap_uuid=
if [ "$swap_num" -ne 0 ]; then
    mkswap "${LOOP}p$swap_num" >/dev/null || fail "mkswap on partition $swap_num failed"
    swap_uuid=$(blkid -p -s UUID -o value "${LOOP}p$swap_num")
fi

root=$(prop ROOT_PARTITION)
[ -n "$root" ] || fail "required image property ROOT_PARTITION not defined or empty"
[ -b "${LOOP}p$root" ] || fail "ROOT_PARTITION=$root is not a partition of the disk"
if [[ "$OSFAMILY" != windows* ]]; then
    MNT=$(mktemp -d)
    mount -o rw "${LOOP}p$root" "$MNT" || fail "cannot mount root partition $root"
    [ -d "$MNT/etc" ] || fail "/etc is missing from the root partition ($root)"
    if [ "$OSFAMILY" = linux ] && [ -f "$MNT/etc/fstab" ]; then
        bad=$(awk '!/^[[:space:]]*#/ && NF >= 3 && $2 != "/" && $3 ~ /ext[234]|msdos|vfat|ntfs/ &&
                   $1 !~ /^(UUID|LABEL)=/ {print $1}' "$MNT/etc/fstab")
        [ -z "$bad" ] || fail "fstab contains non-persistent block device names: $bad"
    fi
    if [ -n "$swap_uuid" ] && [ "${OSFAMILY:-linux}" = linux ]; then
        [ -f "$MNT/etc/fstab" ] || fail "/etc/fstab file is missing"
        printf 'UUID=%s\tnone\tswap\tsw\t0\t0\n' "$swap_uuid" >>"$MNT/etc/fstab"
        say "added swap UUID=$swap_uuid to /etc/fstab"
    fi
    umount "$MNT"
    rmdir "$MNT"
    MNT=
fi
say "deployed $IMAGE to $OUT ($SIZE)"
