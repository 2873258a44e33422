#!/usr/bin/env bash
# Build real, bootable Debian 12 (bookworm, amd64) disk images for the end-to-end tests:
#
#   OUTDIR/debian12-mbr.raw  MBR: p1 ext4 / (bootable, /boot inside), p2 linux swap (last)
#   OUTDIR/debian12-gpt.raw  GPT: p1 BIOS boot (EF02, 1 MiB, GRUB core), p2 ext4 /, p3 swap (last)
#   OUTDIR/guest.json        what the tests may rely on (passwords, UUIDs, marker ...)
#   OUTDIR/id_ed25519        private half of the key planted in authorized_keys
#
# Usage: build-debian.sh OUTDIR
#
# Runs debootstrap once into a scratch directory, copies that tree into each image's
# root filesystem and installs GRUB per image through a loop device. Needs root. Cached:
# when OUTDIR holds both images and a stamp equal to this script's hash, it does nothing.
# Debootstrap's .deb cache persists in $SNF_DEBOOTSTRAP_CACHE (default
# /var/cache/snf-test-debootstrap) so rebuilds on one machine download nothing.
#
# Environment: SNF_DEBIAN_MIRROR (default http://deb.debian.org/debian).
set -euo pipefail

usage() { echo "usage: $0 OUTDIR" >&2; exit 2; }
[ $# -eq 1 ] || usage
if [ "$(id -u)" -ne 0 ]; then
    echo "build-debian.sh: needs root (debootstrap, loop devices, mount)" >&2
    exit 1
fi
for tool in debootstrap partx sfdisk sgdisk mkfs.ext4 mkswap losetup e2fsck openssl ssh-keygen; do
    command -v "$tool" >/dev/null || { echo "build-debian.sh: $tool not found (run scripts/setup.sh)" >&2; exit 1; }
done

OUTDIR=$(realpath -m "$1")
SELF=$(realpath "${BASH_SOURCE[0]}")
HERE=$(dirname "$SELF")
# shellcheck source=lib.sh
. "$HERE/lib.sh"
STAMP_VALUE=$(cat "$SELF" "$HERE/lib.sh" | sha256sum | cut -d' ' -f1)
MIRROR=${SNF_DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE=${SNF_DEBOOTSTRAP_CACHE:-/var/cache/snf-test-debootstrap}

if [ -f "$OUTDIR/debian12-mbr.raw" ] && [ -f "$OUTDIR/debian12-gpt.raw" ] &&
    [ "$(cat "$OUTDIR/stamp" 2>/dev/null)" = "$STAMP_VALUE" ]; then
    echo "build-debian.sh: $OUTDIR is up to date" >&2
    exit 0
fi

# ---- facts the tests rely on (also written to guest.json) ---------------------------
SIZE=3G                       # virtual size of each image
SWAP_MIB=256                  # swap partition size
ROOT_PW=snf-root-password
USER_PW=snf-user-password
SECRET_MARKER=SNF-TEST-SECRET-7f3a9c1e
HOSTNAME_=snf-debian12
MACHINE_ID=5e1f0c2a9b8d4e7f8a6b3c2d1e0f9a8b
# Fixed UUIDs make the images reproducible and let tests check fstab rewrites.
MBR_ROOT_UUID=2f1d6a3e-5b7c-4d8e-9f10-112233445501
MBR_SWAP_UUID=2f1d6a3e-5b7c-4d8e-9f10-112233445502
GPT_ROOT_UUID=2f1d6a3e-5b7c-4d8e-9f10-112233445511
GPT_SWAP_UUID=2f1d6a3e-5b7c-4d8e-9f10-112233445512
MBR_LABEL_ID=0x5a0f0001
GPT_DISK_GUID=6a1f3c2e-0b4d-4e8f-9a7b-5c6d7e8f9001
GPT_PART_GUIDS=(6a1f3c2e-0b4d-4e8f-9a7b-5c6d7e8f9011 6a1f3c2e-0b4d-4e8f-9a7b-5c6d7e8f9012
    6a1f3c2e-0b4d-4e8f-9a7b-5c6d7e8f9013)
# Packages on top of minbase: what it takes to boot under BIOS, log in on the serial
# console and be reachable by ssh. The cloud kernel (105 MB installed instead of 400 MB)
# keeps the images small; it has virtio, which boot-check.sh uses.
INCLUDE=linux-image-cloud-amd64,grub-pc,systemd-sysv,udev,openssh-server,sudo,kmod,iproute2,ifupdown,zstd
# ---------------------------------------------------------------------------------------

mkdir -p "$OUTDIR" "$CACHE"
WORK=$(mktemp -d "$OUTDIR/.build.XXXXXX")
ROOTFS=$WORK/rootfs
MOUNTS=()   # mount points, unmounted in reverse order
LOOPS=()    # loop devices, detached at exit

cleanup() {
    local rc=$?
    set +e
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
        umount -R "${MOUNTS[i]}" 2>/dev/null || umount -lR "${MOUNTS[i]}"
    done
    for l in "${LOOPS[@]}"; do detach_loop "$l"; done
    rm -rf "$WORK"
    [ $rc -eq 0 ] || echo "build-debian.sh: FAILED (exit $rc)" >&2
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "build-debian.sh: [$(date +%T)] $*" >&2; }

in_root() { # in_root DIR CMD... : chroot with the pseudo filesystems a package script needs
    local dir=$1; shift
    chroot "$dir" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
        DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 "$@"
}

mount_pseudo() { # mount_pseudo DIR [LOOPDEV]: /proc, /sys and a private /dev
    local dir=$1 loop=${2:-}
    mount -t proc proc "$dir/proc"; MOUNTS+=("$dir/proc")
    mount -t sysfs sysfs "$dir/sys"; MOUNTS+=("$dir/sys")
    # A private /dev (not a bind of the host's) so the by-uuid link grub-mkconfig
    # looks for does not leak into the host.
    mount -t tmpfs -o mode=755 devtmp "$dir/dev"; MOUNTS+=("$dir/dev")
    cp -a /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty "$dir/dev/"
    mkdir -p "$dir/dev/pts" "$dir/dev/shm"
    if [ -n "$loop" ]; then
        cp -a "$loop" "$loop"p* "$dir/dev/"
    fi
}

# ---- 1. debootstrap once ----------------------------------------------------------------
log "debootstrap bookworm into $ROOTFS (cache $CACHE)"
mkdir -p "$ROOTFS"
# Builds into other OUTDIRs may run at the same time: one debootstrap per cache.
exec 9>"$CACHE/.lock"
flock 9
debootstrap --variant=minbase --arch=amd64 --include="$INCLUDE" \
    --cache-dir="$CACHE" bookworm "$ROOTFS" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 || {
    tail -40 "$WORK/debootstrap.log" >&2
    exit 1
}

flock -u 9
log "configuring the guest"
mount_pseudo "$ROOTFS"
echo "$HOSTNAME_" >"$ROOTFS/etc/hostname"
cat >"$ROOTFS/etc/hosts" <<EOF
127.0.0.1	localhost
127.0.1.1	$HOSTNAME_
::1		localhost ip6-localhost ip6-loopback
EOF
cat >"$ROOTFS/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb http://deb.debian.org/debian-security bookworm-security main
EOF

# Passwords: SHA-512 crypt hashes (what PASSWD_HASHING_METHOD defaults to on Linux).
ROOT_HASH=$(openssl passwd -6 -salt snfrootsalt "$ROOT_PW")
USER_HASH=$(openssl passwd -6 -salt snfusersalt "$USER_PW")
in_root "$ROOTFS" useradd -m -u 1000 -U -s /bin/bash -c "Test User" user
in_root "$ROOTFS" usermod -p "$ROOT_HASH" root
in_root "$ROOTFS" usermod -p "$USER_HASH" -aG sudo user

# Networking through systemd-networkd (part of systemd, no extra package).
cat >"$ROOTFS/etc/systemd/network/80-dhcp.network" <<'EOF'
[Match]
Name=en* eth*

[Network]
DHCP=yes
EOF
in_root "$ROOTFS" systemctl enable systemd-networkd.service >/dev/null 2>&1
# A getty on the serial console even if the kernel's console= line is changed.
in_root "$ROOTFS" systemctl enable serial-getty@ttyS0.service >/dev/null 2>&1

# GRUB: serial + VGA terminal, kernel console on ttyS0, short timeout.
sed -i -e 's/^GRUB_TIMEOUT=.*/GRUB_TIMEOUT=1/' \
    -e 's/^GRUB_CMDLINE_LINUX=.*/GRUB_CMDLINE_LINUX="console=tty0 console=ttyS0,115200n8"/' \
    "$ROOTFS/etc/default/grub"
cat >>"$ROOTFS/etc/default/grub" <<'EOF'
GRUB_TERMINAL="serial console"
GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"
GRUB_DISABLE_OS_PROBER=true
EOF

# ---- dirt for the system preparation to clean -------------------------------------------
echo "$MACHINE_ID" >"$ROOTFS/etc/machine-id"
mkdir -p "$ROOTFS/etc/udev/rules.d"
cat >"$ROOTFS/etc/udev/rules.d/70-persistent-net.rules" <<'EOF'
# This file was automatically generated by the /lib/udev/write_net_rules
SUBSYSTEM=="net", ACTION=="add", DRIVERS=="?*", ATTR{address}=="52:54:00:12:34:56", ATTR{dev_id}=="0x0", ATTR{type}=="1", KERNEL=="eth*", NAME="eth0"
EOF
for i in 1 2 3; do
    printf 'Jan  %d 10:0%d:00 %s sshd[%d]: Accepted password for user from 10.0.0.%d port 4242 ssh2\n' \
        "$i" "$i" "$HOSTNAME_" "$((1000 + i))" "$i" >>"$ROOTFS/var/log/auth.log"
done
printf 'Jan  1 10:00:00 %s kernel: Linux version 6.1.0 (test)\n' "$HOSTNAME_" >"$ROOTFS/var/log/syslog"
printf 'Jan  1 10:00:00 %s kernel: old rotated entry\n' "$HOSTNAME_" >"$ROOTFS/var/log/syslog.1"
gzip -c "$ROOTFS/var/log/syslog.1" >"$ROOTFS/var/log/syslog.2.gz"
mkdir -p "$ROOTFS/var/log/apt"
echo "Start-Date: 2024-01-01  10:00:00" >>"$ROOTFS/var/log/apt/history.log"
# debootstrap leaves every .deb it installed in /var/cache/apt/archives (80 MB):
# keep a dozen small ones as the apt-cache dirt a used system has, drop the rest so
# the images (and every test that copies them) stay small.
find "$ROOTFS/var/cache/apt/archives" -maxdepth 1 -name '*.deb' -printf '%s %p\n' |
    sort -n | tail -n +13 | cut -d' ' -f2- | xargs -r rm -f
in_root "$ROOTFS" apt-cache gencaches >/dev/null 2>&1 || true
echo "scratch file" >"$ROOTFS/tmp/snf-test-tmpfile"
mkdir -p "$ROOTFS/tmp/snf-test-dir" && echo nested >"$ROOTFS/tmp/snf-test-dir/file"
echo "var tmp scratch" >"$ROOTFS/var/tmp/snf-test-vartmp"
ssh-keygen -q -t ed25519 -N '' -C snf-test-key -f "$WORK/id_ed25519"
for home in /root /home/user; do
    printf 'ls -la\nsudo apt-get update\necho secret-command-line\n' >"$ROOTFS$home/.bash_history"
    mkdir -p "$ROOTFS$home/.ssh"
    cp "$WORK/id_ed25519.pub" "$ROOTFS$home/.ssh/authorized_keys"
    chmod 700 "$ROOTFS$home/.ssh"
    chmod 600 "$ROOTFS$home/.ssh/authorized_keys" "$ROOTFS$home/.bash_history"
done
in_root "$ROOTFS" chown -R user:user /home/user
echo "$SECRET_MARKER" >"$ROOTFS/root/secret"
chmod 600 "$ROOTFS/root/secret"
ls "$ROOTFS"/etc/ssh/ssh_host_*_key >/dev/null # openssh-server's postinst made them

for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do umount "${MOUNTS[i]}"; done
MOUNTS=()

# ---- 2. one image per partition table ---------------------------------------------------
make_image() { # make_image mbr|gpt OUTFILE
    local kind=$1 out=$2 root_uuid swap_uuid rootpart swappart loop mnt
    rm -f "$out"
    truncate -s "$SIZE" "$out"
    local total_mib=$(($(stat -c %s "$out") / 1048576))
    if [ "$kind" = mbr ]; then
        root_uuid=$MBR_ROOT_UUID swap_uuid=$MBR_SWAP_UUID rootpart=1 swappart=2
        sfdisk -q "$out" <<EOF
label: dos
label-id: $MBR_LABEL_ID
unit: sectors

start=2048, size=$(((total_mib - 1 - SWAP_MIB) * 2048)), type=83, bootable
start=$(((total_mib - SWAP_MIB) * 2048)), type=82
EOF
    else
        root_uuid=$GPT_ROOT_UUID swap_uuid=$GPT_SWAP_UUID rootpart=2 swappart=3
        # No -q: sgdisk 1.0.9 -q silently writes nothing on a disk without a table.
        sgdisk -o -U "$GPT_DISK_GUID" \
            -n 1:2048:+1M -t 1:EF02 -c 1:bios -u "1:${GPT_PART_GUIDS[0]}" \
            -n "2:0:$(((total_mib - 1 - SWAP_MIB) * 2048 - 1))" -t 2:8300 -c 2:root -u "2:${GPT_PART_GUIDS[1]}" \
            -n "3:0:+${SWAP_MIB}M" -t 3:8200 -c 3:swap -u "3:${GPT_PART_GUIDS[2]}" "$out" >/dev/null
        sgdisk -v "$out" | grep -q 'No problems found' || { echo "build-debian.sh: sgdisk made a bad table" >&2; return 1; }
    fi
    loop=$(attach_loop "$out")
    LOOPS+=("$loop")
    mkfs.ext4 -q -U "$root_uuid" -L root "${loop}p$rootpart"
    mkswap -q -U "$swap_uuid" -L swap "${loop}p$swappart" >/dev/null
    mnt=$WORK/mnt-$kind
    mkdir -p "$mnt"
    local nmounts=${#MOUNTS[@]}
    mount "${loop}p$rootpart" "$mnt"; MOUNTS+=("$mnt")
    (cd "$ROOTFS" && tar --numeric-owner --xattrs --acls -cf - .) | (cd "$mnt" && tar --numeric-owner --xattrs --acls -xpf -)
    cat >"$mnt/etc/fstab" <<EOF
# /etc/fstab: static file system information.
# <file system> <mount point> <type> <options> <dump> <pass>
UUID=$root_uuid / ext4 errors=remount-ro 0 1
UUID=$swap_uuid none swap sw 0 0
EOF
    mount_pseudo "$mnt" "$loop"
    # grub-mkconfig only writes root=UUID= when /dev/disk/by-uuid/<uuid> exists.
    mkdir -p "$mnt/dev/disk/by-uuid"
    ln -s "../../$(basename "$loop")p$rootpart" "$mnt/dev/disk/by-uuid/$root_uuid"
    in_root "$mnt" grub-install --target=i386-pc "$loop" >"$WORK/grub-$kind.log" 2>&1 || {
        cat "$WORK/grub-$kind.log" >&2
        return 1
    }
    in_root "$mnt" update-grub >>"$WORK/grub-$kind.log" 2>&1 || {
        cat "$WORK/grub-$kind.log" >&2
        return 1
    }
    grep -q "root=UUID=$root_uuid" "$mnt/boot/grub/grub.cfg" || {
        echo "build-debian.sh: grub.cfg does not boot root=UUID=$root_uuid" >&2
        return 1
    }
    # grub-pc's debconf would otherwise point at a loop device that no guest has.
    echo "grub-pc grub-pc/install_devices multiselect /dev/sda" | in_root "$mnt" debconf-set-selections
    umount -R "$mnt"
    MOUNTS=("${MOUNTS[@]:0:nmounts}")
    # snf-image refuses to resize an ext filesystem that is not clean.
    e2fsck -fy "${loop}p$rootpart" >/dev/null 2>&1 || [ $? -le 1 ]
    detach_loop "$loop"
    unset 'LOOPS[${#LOOPS[@]}-1]'
}

log "building MBR image"
make_image mbr "$WORK/debian12-mbr.raw"
log "building GPT image"
make_image gpt "$WORK/debian12-gpt.raw"

cat >"$WORK/guest.json" <<EOF
{
  "os": "debian", "version": "12", "codename": "bookworm", "arch": "amd64",
  "hostname": "$HOSTNAME_",
  "users": {"root": "$ROOT_PW", "user": "$USER_PW"},
  "user_uid": 1000,
  "secret_path": "/root/secret",
  "secret_marker": "$SECRET_MARKER",
  "machine_id": "$MACHINE_ID",
  "swap_mib": $SWAP_MIB,
  "images": {
    "mbr": {"file": "debian12-mbr.raw", "root_partition": 1, "swap_partition": 2,
            "root_uuid": "$MBR_ROOT_UUID", "swap_uuid": "$MBR_SWAP_UUID"},
    "gpt": {"file": "debian12-gpt.raw", "root_partition": 2, "swap_partition": 3,
            "bios_boot_partition": 1,
            "root_uuid": "$GPT_ROOT_UUID", "swap_uuid": "$GPT_SWAP_UUID"}
  }
}
EOF

rm -f "$OUTDIR/stamp"
mv -f "$WORK/debian12-mbr.raw" "$WORK/debian12-gpt.raw" "$WORK/guest.json" \
    "$WORK/id_ed25519" "$WORK/id_ed25519.pub" "$OUTDIR/"
echo "$STAMP_VALUE" >"$OUTDIR/stamp"
log "done: $(du -h --apparent-size "$OUTDIR"/debian12-*.raw | tr '\n' ' ')"
log "allocated: $(du -h "$OUTDIR"/debian12-*.raw | tr '\n' ' ')"
