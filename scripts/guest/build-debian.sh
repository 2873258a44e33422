#!/usr/bin/env bash
# Build real, bootable Debian 12 (bookworm, amd64) disk images for the end-to-end tests:
#
#   OUTDIR/debian12-mbr.raw  MBR: p1 ext4 / (bootable, /boot inside), p2 linux swap (last)
#   OUTDIR/debian12-gpt.raw  GPT: p1 BIOS boot (EF02, 1 MiB, GRUB core), p2 ext4 /, p3 swap (last)
#   OUTDIR/debian12-uefi.raw GPT, booted by UEFI firmware (OVMF): p1 EFI system partition
#                            (FAT, EF00, /boot/efi, GRUB x86_64-efi at the removable path
#                            EFI/BOOT/BOOTX64.EFI), p2 ext4 /, p3 swap (last); Debian's
#                            generic kernel (AHCI) instead of the cloud one
#   OUTDIR/debian12-lvm.raw  MBR: p1 ext4 /boot (bootable), p2 LVM PV (type 8e, last) holding
#                            VG snfvg: LV root (ext4 /), then LV swap (the Ubuntu Server /
#                            RHEL layout); lvm2 in the guest and in its initramfs
#   OUTDIR/debian12-xfs.raw  MBR: p1 xfs / (bootable, /boot inside: GRUB reads xfs), p2 swap (last)
#   OUTDIR/debian12-btrfs.raw MBR: p1 btrfs, / in subvolume @rootfs (subvol= in fstab,
#                            rootflags=subvol=@rootfs on the kernel line, as Debian's
#                            installer does; /boot inside), p2 swap (last)
#   OUTDIR/guest.json        what the tests may rely on (passwords, UUIDs, marker ...)
#   OUTDIR/id_ed25519        private half of the key planted in authorized_keys
#
# Usage: build-debian.sh OUTDIR
#
# Runs debootstrap once into a scratch directory, copies that tree into each image's
# root filesystem and installs GRUB per image through a loop device. Needs root. Cached:
# when OUTDIR holds all images and a stamp equal to this script's hash, it does nothing.
#
# The LVM image is made without device-mapper (this machine's kernel has none): the LVM
# tools write only metadata (no activation) on the loop device's second partition, and
# the root and swap filesystems are made as files and copied to the LVs' byte offsets.
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
for tool in debootstrap partx sfdisk sgdisk mkfs.ext4 mkfs.xfs xfs_repair mkfs.btrfs btrfs mkfs.vfat mmd mcopy mkswap losetup e2fsck openssl ssh-keygen \
    pvcreate vgcreate lvcreate lvs pvs vgs vgck; do
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
    [ -f "$OUTDIR/debian12-lvm.raw" ] && [ -f "$OUTDIR/debian12-uefi.raw" ] &&
    [ -f "$OUTDIR/debian12-xfs.raw" ] && [ -f "$OUTDIR/debian12-btrfs.raw" ] &&
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
UEFI_ROOT_UUID=2f1d6a3e-5b7c-4d8e-9f10-112233445531
UEFI_SWAP_UUID=2f1d6a3e-5b7c-4d8e-9f10-112233445532
UEFI_ESP_VOLID=5A0F0E51       # FAT volume id: fstab names it UUID=5A0F-0E51
UEFI_ESP_MIB=64
UEFI_DISK_GUID=6a1f3c2e-0b4d-4e8f-9a7b-5c6d7e8f9002
UEFI_PART_GUIDS=(6a1f3c2e-0b4d-4e8f-9a7b-5c6d7e8f9021 6a1f3c2e-0b4d-4e8f-9a7b-5c6d7e8f9022
    6a1f3c2e-0b4d-4e8f-9a7b-5c6d7e8f9023)
# GRUB for UEFI (its -bin package coexists with grub-pc) and Debian's generic kernel in
# place of the cloud one, which has no AHCI driver: the UEFI image is the one the tests
# boot on SATA. Installed into that image only, so the other images stay as they were.
UEFI_PACKAGES=(grub-efi-amd64-bin linux-image-amd64)
XFS_LABEL_ID=0x5a0f0004
XFS_ROOT_UUID=2f1d6a3e-5b7c-4d8e-9f10-112233445541
XFS_SWAP_UUID=2f1d6a3e-5b7c-4d8e-9f10-112233445542
BTRFS_LABEL_ID=0x5a0f0005
BTRFS_ROOT_UUID=2f1d6a3e-5b7c-4d8e-9f10-112233445551
BTRFS_SWAP_UUID=2f1d6a3e-5b7c-4d8e-9f10-112233445552
BTRFS_SUBVOL=@rootfs          # the root subvolume's name (Debian's installer's)
LVM_LABEL_ID=0x5a0f0003
LVM_BOOT_MIB=256              # /boot partition size
LVM_VG=snfvg
LVM_BOOT_UUID=2f1d6a3e-5b7c-4d8e-9f10-112233445521
LVM_ROOT_UUID=2f1d6a3e-5b7c-4d8e-9f10-112233445522
LVM_SWAP_UUID=2f1d6a3e-5b7c-4d8e-9f10-112233445523
LVM_PV_UUID=SnfPVd-eb12-LVMg-uest-0001-Test-PV0001 # vgcreate/lvcreate take no UUID: theirs are recorded
# Packages on top of minbase: what it takes to boot under BIOS, log in on the serial
# console and be reachable by ssh. The cloud kernel (105 MB installed instead of 400 MB)
# keeps the images small; it has virtio, which boot-check.sh uses.
# libhivex0 and libntfs-3g89: the shared libraries snf-mkimage links (its package depends
# on them), so the host-bundling test can run the binary as the guest's own `/`.
INCLUDE=linux-image-cloud-amd64,grub-pc,systemd-sysv,udev,openssh-server,sudo,kmod,iproute2,ifupdown,zstd,libhivex0,libntfs-3g89
# Only the LVM image gets lvm2: it is installed into the tree after the two plain images
# are made, so they stay as they were (no LVM udev rules or initramfs hook in them).
LVM_PACKAGES=(lvm2)
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
make_image() { # make_image mbr|gpt|uefi|xfs|btrfs OUTFILE
    local kind=$1 out=$2 root_uuid swap_uuid rootpart swappart loop mnt label_id
    rm -f "$out"
    truncate -s "$SIZE" "$out"
    local total_mib=$(($(stat -c %s "$out") / 1048576))
    local fstype=ext4 fsopts=errors=remount-ro fspass=1
    case $kind in
        xfs) fstype=xfs fsopts=defaults fspass=0 ;;
        # Debian's installer: the root in a subvolume, fsck.btrfs is a no-op.
        btrfs) fstype=btrfs fsopts=defaults,subvol=$BTRFS_SUBVOL fspass=0 ;;
    esac
    if [ "$kind" = mbr ] || [ "$kind" = xfs ] || [ "$kind" = btrfs ]; then
        case $kind in
            mbr) root_uuid=$MBR_ROOT_UUID swap_uuid=$MBR_SWAP_UUID label_id=$MBR_LABEL_ID ;;
            xfs) root_uuid=$XFS_ROOT_UUID swap_uuid=$XFS_SWAP_UUID label_id=$XFS_LABEL_ID ;;
            btrfs) root_uuid=$BTRFS_ROOT_UUID swap_uuid=$BTRFS_SWAP_UUID label_id=$BTRFS_LABEL_ID ;;
        esac
        rootpart=1 swappart=2
        sfdisk -q "$out" <<EOF
label: dos
label-id: $label_id
unit: sectors

start=2048, size=$(((total_mib - 1 - SWAP_MIB) * 2048)), type=83, bootable
start=$(((total_mib - SWAP_MIB) * 2048)), type=82
EOF
    elif [ "$kind" = uefi ]; then
        root_uuid=$UEFI_ROOT_UUID swap_uuid=$UEFI_SWAP_UUID rootpart=2 swappart=3
        sgdisk -o -U "$UEFI_DISK_GUID" \
            -n "1:2048:+${UEFI_ESP_MIB}M" -t 1:EF00 -c 1:esp -u "1:${UEFI_PART_GUIDS[0]}" \
            -n "2:0:$(((total_mib - 1 - SWAP_MIB) * 2048 - 1))" -t 2:8300 -c 2:root -u "2:${UEFI_PART_GUIDS[1]}" \
            -n "3:0:+${SWAP_MIB}M" -t 3:8200 -c 3:swap -u "3:${UEFI_PART_GUIDS[2]}" "$out" >/dev/null
        sgdisk -v "$out" | grep -q 'No problems found' || { echo "build-debian.sh: sgdisk made a bad table" >&2; return 1; }
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
    mkswap -q -U "$swap_uuid" -L swap "${loop}p$swappart" >/dev/null
    mnt=$WORK/mnt-$kind
    mkdir -p "$mnt"
    local nmounts=${#MOUNTS[@]}
    case $kind in
        xfs)
            mkfs.xfs -q -m uuid="$root_uuid" -L root "${loop}p$rootpart"
            mount "${loop}p$rootpart" "$mnt"
            ;;
        btrfs)
            mkfs.btrfs -q -U "$root_uuid" -L root "${loop}p$rootpart" >/dev/null
            mount "${loop}p$rootpart" "$mnt"
            btrfs -q subvolume create "$mnt/$BTRFS_SUBVOL" >/dev/null
            umount "$mnt"
            mount -o "subvol=$BTRFS_SUBVOL" "${loop}p$rootpart" "$mnt"
            ;;
        *)
            mkfs.ext4 -q -U "$root_uuid" -L root "${loop}p$rootpart"
            mount "${loop}p$rootpart" "$mnt"
            ;;
    esac
    MOUNTS+=("$mnt")
    (cd "$ROOTFS" && tar --numeric-owner --xattrs --acls -cf - .) | (cd "$mnt" && tar --numeric-owner --xattrs --acls -xpf -)
    cat >"$mnt/etc/fstab" <<EOF
# /etc/fstab: static file system information.
# <file system> <mount point> <type> <options> <dump> <pass>
UUID=$root_uuid / $fstype $fsopts 0 $fspass
UUID=$swap_uuid none swap sw 0 0
EOF
    mount_pseudo "$mnt" "$loop"
    if [ "$fstype" != ext4 ]; then
        # The initramfs must mount the root: MODULES=most carries every filesystem
        # module, but say so explicitly and check, so a changed default cannot break it.
        echo "$fstype" >>"$mnt/etc/initramfs-tools/modules"
        # The resume hook would otherwise pick the build host's swap.
        echo RESUME=none >"$mnt/etc/initramfs-tools/conf.d/resume"
        in_root "$mnt" update-initramfs -u -k all >"$WORK/initramfs-$kind.log" 2>&1 || {
            cat "$WORK/initramfs-$kind.log" >&2
            return 1
        }
        local kver listing
        kver=$(find "$mnt/boot" -maxdepth 1 -name 'vmlinuz-*' -printf '%f\n' | sed 's/^vmlinuz-//' | sort -V | tail -1)
        # Listed whole first: grep -q closing the pipe early would fail it (pipefail).
        listing=$(in_root "$mnt" lsinitramfs "/boot/initrd.img-$kver")
        grep -qE "/$fstype\.ko" <<<"$listing" || {
            echo "build-debian.sh: the $kind image's initramfs has no $fstype module" >&2
            return 1
        }
    fi
    local target=i386-pc
    if [ "$kind" = uefi ]; then
        mkfs.vfat -i "$UEFI_ESP_VOLID" -n ESP "${loop}p1" >/dev/null
        # nofail: a guest kernel without vfat still boots.
        echo "UUID=${UEFI_ESP_VOLID:0:4}-${UEFI_ESP_VOLID:4:4} /boot/efi vfat umask=0077,nofail 0 1" >>"$mnt/etc/fstab"
        mkdir -p "$mnt/boot/efi"
        flock 9
        mount --bind "$CACHE" "$mnt/var/cache/apt/archives"; MOUNTS+=("$mnt/var/cache/apt/archives")
        if ! in_root "$mnt" apt-get install -y --no-install-recommends "${UEFI_PACKAGES[@]}" \
            >"$WORK/apt-uefi.log" 2>&1; then
            # debootstrap's package lists may not name them: fetch the lists once.
            in_root "$mnt" apt-get update >>"$WORK/apt-uefi.log" 2>&1 &&
                in_root "$mnt" apt-get install -y --no-install-recommends "${UEFI_PACKAGES[@]}" \
                    >>"$WORK/apt-uefi.log" 2>&1 || { tail -40 "$WORK/apt-uefi.log" >&2; return 1; }
        fi
        local cloud
        cloud=$(in_root "$mnt" dpkg-query -W -f '${Package}\n' 'linux-image-*cloud-amd64')
        # shellcheck disable=SC2086 # one package name a line
        in_root "$mnt" apt-get purge -y $cloud >>"$WORK/apt-uefi.log" 2>&1 ||
            { tail -40 "$WORK/apt-uefi.log" >&2; return 1; }
        umount "$mnt/var/cache/apt/archives"; unset 'MOUNTS[${#MOUNTS[@]}-1]'
        flock -u 9
        in_root "$mnt" apt-cache gencaches >/dev/null 2>&1 || true
        local kmods
        kmods=$(find "$mnt/lib/modules" -name 'ahci.ko*' | head -1)
        [ -n "$kmods" ] || { echo "build-debian.sh: the UEFI image's kernel has no ahci module" >&2; return 1; }
        # What `grub-install --target=x86_64-efi --removable --no-nvram` does, by hand:
        # it wants the ESP mounted and this machine's kernel has no vfat. The modules go
        # to /boot/grub/x86_64-efi, the core image (finding the root by UUID, as
        # grub-install's load.cfg does) to the removable path EFI/BOOT/BOOTX64.EFI,
        # which firmware boots without NVRAM entries (a new VM has none).
        mkdir -p "$mnt/boot/grub/x86_64-efi"
        cp "$mnt"/usr/lib/grub/x86_64-efi/*.mod "$mnt"/usr/lib/grub/x86_64-efi/*.lst \
            "$mnt/boot/grub/x86_64-efi/"
        printf 'search.fs_uuid %s root\nset prefix=($root)/boot/grub\n' "$root_uuid" >"$mnt/tmp/load.cfg"
        in_root "$mnt" grub-mkimage -O x86_64-efi -o /tmp/BOOTX64.EFI -c /tmp/load.cfg \
            -p /boot/grub part_gpt ext2 search_fs_uuid >"$WORK/grub-$kind.log" 2>&1 || {
            cat "$WORK/grub-$kind.log" >&2
            return 1
        }
        MTOOLS_SKIP_CHECK=1 mmd -i "${loop}p1" ::/EFI ::/EFI/BOOT
        MTOOLS_SKIP_CHECK=1 mcopy -i "${loop}p1" "$mnt/tmp/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI
        rm -f "$mnt/tmp/BOOTX64.EFI" "$mnt/tmp/load.cfg"
        target=
    fi
    # grub-mkconfig only writes root=UUID= when /dev/disk/by-uuid/<uuid> exists.
    mkdir -p "$mnt/dev/disk/by-uuid"
    ln -s "../../$(basename "$loop")p$rootpart" "$mnt/dev/disk/by-uuid/$root_uuid"
    if [ -n "$target" ]; then
        in_root "$mnt" grub-install --target="$target" "$loop" >"$WORK/grub-$kind.log" 2>&1 || {
            cat "$WORK/grub-$kind.log" >&2
            return 1
        }
    fi
    in_root "$mnt" update-grub >>"$WORK/grub-$kind.log" 2>&1 || {
        cat "$WORK/grub-$kind.log" >&2
        return 1
    }
    grep -q "root=UUID=$root_uuid" "$mnt/boot/grub/grub.cfg" || {
        echo "build-debian.sh: grub.cfg does not boot root=UUID=$root_uuid" >&2
        return 1
    }
    if [ "$kind" = btrfs ]; then
        # update-grub adds it for a root in a subvolume; without it the kernel mounts
        # the top level, which has no /sbin/init.
        grep -q "rootflags=subvol=$BTRFS_SUBVOL" "$mnt/boot/grub/grub.cfg" || {
            echo "build-debian.sh: grub.cfg lacks rootflags=subvol=$BTRFS_SUBVOL" >&2
            return 1
        }
    fi
    # grub-pc's debconf would otherwise point at a loop device that no guest has.
    echo "grub-pc grub-pc/install_devices multiselect /dev/sda" | in_root "$mnt" debconf-set-selections
    for ((i = ${#MOUNTS[@]} - 1; i >= nmounts; i--)); do umount "${MOUNTS[i]}"; done
    MOUNTS=("${MOUNTS[@]:0:nmounts}")
    case $fstype in
        # snf-image refuses to resize an ext filesystem that is not clean.
        ext4) e2fsck -fy "${loop}p$rootpart" >/dev/null 2>&1 || [ $? -le 1 ] ;;
        xfs) xfs_repair -n "${loop}p$rootpart" >"$WORK/fsck-$kind.log" 2>&1 || { cat "$WORK/fsck-$kind.log" >&2; return 1; } ;;
        btrfs) btrfs check "${loop}p$rootpart" >"$WORK/fsck-$kind.log" 2>&1 || { cat "$WORK/fsck-$kind.log" >&2; return 1; } ;;
    esac
    detach_loop "$loop"
    unset 'LOOPS[${#LOOPS[@]}-1]'
}

log "building MBR image"
make_image mbr "$WORK/debian12-mbr.raw"
log "building GPT image"
make_image gpt "$WORK/debian12-gpt.raw"
log "building UEFI image"
make_image uefi "$WORK/debian12-uefi.raw"
log "building xfs image"
make_image xfs "$WORK/debian12-xfs.raw"
log "building btrfs image"
make_image btrfs "$WORK/debian12-btrfs.raw"

# ---- 3. the LVM image (last: it changes the tree) ---------------------------------------
# lvm_tool CMD ARGS...: an LVM tool that sees only the loop device's PV partition and
# never talks to device-mapper (this kernel has none), with its own configuration so the
# host's /etc/lvm (backups, archives, devices file) is neither read nor written.
lvm_tool() {
    LVM_SYSTEM_DIR=$WORK/lvm-etc LVM_SUPPRESS_FD_WARNINGS=1 "$@" --driverloaded n 2>>"$WORK/lvm.log" || {
        echo "build-debian.sh: $* failed:" >&2
        tail -20 "$WORK/lvm.log" >&2
        return 1
    }
}

fsck_clean() { # fsck_clean TARGET: e2fsck -fn, its report shown only when not clean
    local report
    report=$(e2fsck -fn "$1" 2>&1) || { echo "$report" >&2; return 1; }
}

make_lvm_image() { # make_lvm_image OUTFILE
    local out=$1 loop kver mnt_boot vg_uuid root_lv_uuid swap_lv_uuid extent pe_start
    local root_pe root_len swap_pe swap_len p2_start root_off swap_off vg_extents
    rm -f "$out"
    truncate -s "$SIZE" "$out"
    local total_mib=$(($(stat -c %s "$out") / 1048576))
    p2_start=$(((1 + LVM_BOOT_MIB) * 2048))
    sfdisk -q "$out" <<EOF
label: dos
label-id: $LVM_LABEL_ID
unit: sectors

start=2048, size=$((LVM_BOOT_MIB * 2048)), type=83, bootable
start=$p2_start, size=$(((total_mib - 1 - LVM_BOOT_MIB) * 2048)), type=8e
EOF
    loop=$(attach_loop "$out")
    LOOPS+=("$loop")

    # /boot: a plain partition GRUB reads, holding the tree's /boot.
    mkfs.ext4 -q -U "$LVM_BOOT_UUID" -L boot "${loop}p1"
    mnt_boot=$WORK/mnt-lvm-boot
    mkdir -p "$mnt_boot"
    mount "${loop}p1" "$mnt_boot"
    cp -a "$ROOTFS/boot/." "$mnt_boot/"
    umount "$mnt_boot"
    find "$ROOTFS/boot" -mindepth 1 -delete
    mount "${loop}p1" "$ROOTFS/boot"; MOUNTS+=("$ROOTFS/boot")

    cat >"$ROOTFS/etc/fstab" <<EOF
# /etc/fstab: static file system information.
# <file system> <mount point> <type> <options> <dump> <pass>
/dev/mapper/$LVM_VG-root / ext4 errors=remount-ro 0 1
UUID=$LVM_BOOT_UUID /boot ext4 defaults 0 2
/dev/$LVM_VG/swap none swap sw 0 0
EOF
    # initramfs-tools' resume hook would otherwise pick the build host's swap.
    echo RESUME=none >"$ROOTFS/etc/initramfs-tools/conf.d/resume"

    mount_pseudo "$ROOTFS" "$loop"
    # lvm2 from the mirror, its .debs kept in the debootstrap cache (bind-mounted over
    # the tree's apt archive, which keeps its dozen dirt .debs untouched).
    flock 9
    mount --bind "$CACHE" "$ROOTFS/var/cache/apt/archives"; MOUNTS+=("$ROOTFS/var/cache/apt/archives")
    if ! in_root "$ROOTFS" apt-get install -y --no-install-recommends "${LVM_PACKAGES[@]}" \
        >"$WORK/apt-lvm.log" 2>&1; then
        # debootstrap's package lists may not name them: fetch the lists once.
        in_root "$ROOTFS" apt-get update >>"$WORK/apt-lvm.log" 2>&1 &&
            in_root "$ROOTFS" apt-get install -y --no-install-recommends "${LVM_PACKAGES[@]}" \
                >>"$WORK/apt-lvm.log" 2>&1 || { tail -40 "$WORK/apt-lvm.log" >&2; return 1; }
    fi
    umount "$ROOTFS/var/cache/apt/archives"; unset 'MOUNTS[${#MOUNTS[@]}-1]'
    flock -u 9
    in_root "$ROOTFS" apt-cache gencaches >/dev/null 2>&1 || true

    kver=$(find "$ROOTFS/boot" -maxdepth 1 -name 'vmlinuz-*' -printf '%f\n' | sed 's/^vmlinuz-//' | sort -V | tail -1)
    [ -n "$kver" ] || { echo "build-debian.sh: no kernel in /boot" >&2; return 1; }
    in_root "$ROOTFS" update-initramfs -u -k all >"$WORK/initramfs-lvm.log" 2>&1 || {
        cat "$WORK/initramfs-lvm.log" >&2
        return 1
    }
    local listing
    # bookworm activates LVs in the initramfs through 69-lvm.rules (no local-top script).
    listing=$(in_root "$ROOTFS" lsinitramfs "/boot/initrd.img-$kver")
    for f in 'sbin/lvm$' '/dm-mod\.ko' 'udev/rules.d/69-lvm.rules$'; do
        grep -qE "$f" <<<"$listing" || {
            echo "build-debian.sh: the initramfs lacks $f: it cannot activate the root LV" >&2
            return 1
        }
    done

    in_root "$ROOTFS" grub-install --target=i386-pc "$loop" >"$WORK/grub-lvm.log" 2>&1 || {
        cat "$WORK/grub-lvm.log" >&2
        return 1
    }
    # Not update-grub: in this chroot it would probe the build host's filesystem for /.
    # In the guest it works (its / is the LV) and writes the same root= line.
    cat >"$ROOTFS/boot/grub/grub.cfg" <<EOF
# Written by build-debian.sh (update-grub in the guest rewrites it the usual way).
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set timeout=1
set default=0
insmod part_msdos
insmod ext2
search --no-floppy --fs-uuid --set=root $LVM_BOOT_UUID
menuentry 'Debian GNU/Linux 12 (root on LVM)' {
	linux /vmlinuz-$kver root=/dev/mapper/$LVM_VG-root ro console=tty0 console=ttyS0,115200n8
	initrd /initrd.img-$kver
}
EOF
    echo "grub-pc grub-pc/install_devices multiselect /dev/sda" | in_root "$ROOTFS" debconf-set-selections
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do umount "${MOUNTS[i]}"; done
    MOUNTS=()
    e2fsck -fy "${loop}p1" >/dev/null 2>&1 || [ $? -le 1 ]

    # The PV, the VG and its two LVs: metadata only.
    mkdir -p "$WORK/lvm-etc"
    cat >"$WORK/lvm-etc/lvm.conf" <<EOF
devices {
    filter = [ "a|^${loop}p2\$|", "r|.*|" ]
    obtain_device_list_from_udev = 0
    use_devicesfile = 0
}
activation { udev_sync = 0 udev_rules = 0 }
backup { backup = 0 archive = 0 }
EOF
    lvm_tool pvcreate -q -y --uuid "$LVM_PV_UUID" --norestorefile "${loop}p2" >/dev/null
    lvm_tool vgcreate -q "$LVM_VG" "${loop}p2" >/dev/null
    vg_extents=$(lvm_tool vgs --noheadings -o vg_extent_count "$LVM_VG" | tr -d ' ')
    extent=$(lvm_tool vgs --noheadings --units b --nosuffix -o vg_extent_size "$LVM_VG" | tr -d ' ')
    swap_len=$((SWAP_MIB * 1048576 / extent))
    lvm_tool lvcreate -q -an -Zn -n root -l $((vg_extents - swap_len)) "$LVM_VG" >/dev/null
    lvm_tool lvcreate -q -an -Zn -n swap -l "$swap_len" "$LVM_VG" >/dev/null
    pe_start=$(lvm_tool pvs --noheadings --units b --nosuffix -o pe_start "${loop}p2" | tr -d ' ')
    lv_range() { # lv_range LV: "first_pe count" of its only segment
        local r
        r=$(lvm_tool lvs --noheadings --segments -o seg_pe_ranges "$LVM_VG/$1" | tr -d ' ')
        [[ "$r" =~ ^${loop}p2:([0-9]+)-([0-9]+)$ ]] || {
            echo "build-debian.sh: LV $1 is not one linear segment: $r" >&2
            return 1
        }
        echo "${BASH_REMATCH[1]} $((BASH_REMATCH[2] - BASH_REMATCH[1] + 1))"
    }
    read -r root_pe root_len < <(lv_range root)
    read -r swap_pe swap_len < <(lv_range swap)
    vg_uuid=$(lvm_tool vgs --noheadings -o vg_uuid "$LVM_VG" | tr -d ' ')
    root_lv_uuid=$(lvm_tool lvs --noheadings -o lv_uuid "$LVM_VG/root" | tr -d ' ')
    swap_lv_uuid=$(lvm_tool lvs --noheadings -o lv_uuid "$LVM_VG/swap" | tr -d ' ')
    lvm_tool vgck "$LVM_VG"
    root_off=$((p2_start * 512 + pe_start + root_pe * extent))
    swap_off=$((p2_start * 512 + pe_start + swap_pe * extent))

    # The root filesystem: the tree (its /boot now an empty mount point) made into an
    # ext4 image of the LV's size and copied to the LV's place in the PV.
    local rootimg=$WORK/lvm-root.ext4 swapimg=$WORK/lvm-swap.img
    truncate -s $((root_len * extent)) "$rootimg"
    mke2fs -q -F -t ext4 -d "$ROOTFS" -U "$LVM_ROOT_UUID" -L root "$rootimg"
    fsck_clean "$rootimg"
    dd if="$rootimg" of="$out" bs=4M oflag=seek_bytes seek="$root_off" conv=notrunc,sparse status=none
    rm -f "$rootimg"
    truncate -s $((swap_len * extent)) "$swapimg"
    mkswap -q -U "$LVM_SWAP_UUID" -L swap "$swapimg" >/dev/null
    dd if="$swapimg" of="$out" bs=4M oflag=seek_bytes seek="$swap_off" conv=notrunc,sparse status=none
    rm -f "$swapimg"
    fsck_clean "$out?offset=$root_off"

    detach_loop "$loop"
    unset 'LOOPS[${#LOOPS[@]}-1]'
    LVM_FACTS=$(cat <<EOF
    "lvm": {"file": "debian12-lvm.raw", "boot_partition": 1, "pv_partition": 2,
            "vg": "$LVM_VG", "root_lv": "root", "swap_lv": "swap",
            "extent_size": $extent, "pe_start": $pe_start,
            "root_extents": $root_len, "swap_extents": $swap_len,
            "boot_uuid": "$LVM_BOOT_UUID", "root_uuid": "$LVM_ROOT_UUID",
            "swap_uuid": "$LVM_SWAP_UUID", "pv_uuid": "$LVM_PV_UUID", "vg_uuid": "$vg_uuid",
            "root_lv_uuid": "$root_lv_uuid", "swap_lv_uuid": "$swap_lv_uuid",
            "kernel": "$kver"}
EOF
)
}

log "building LVM image"
make_lvm_image "$WORK/debian12-lvm.raw"

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
            "root_uuid": "$GPT_ROOT_UUID", "swap_uuid": "$GPT_SWAP_UUID"},
    "uefi": {"file": "debian12-uefi.raw", "root_partition": 2, "swap_partition": 3,
             "esp_partition": 1, "esp_uuid": "${UEFI_ESP_VOLID:0:4}-${UEFI_ESP_VOLID:4:4}",
             "root_uuid": "$UEFI_ROOT_UUID", "swap_uuid": "$UEFI_SWAP_UUID"},
$LVM_FACTS,
    "xfs": {"file": "debian12-xfs.raw", "root_partition": 1, "swap_partition": 2,
            "label_id": "$XFS_LABEL_ID",
            "root_uuid": "$XFS_ROOT_UUID", "swap_uuid": "$XFS_SWAP_UUID"},
    "btrfs": {"file": "debian12-btrfs.raw", "root_partition": 1, "swap_partition": 2,
              "label_id": "$BTRFS_LABEL_ID", "root_subvolume": "$BTRFS_SUBVOL",
              "root_uuid": "$BTRFS_ROOT_UUID", "swap_uuid": "$BTRFS_SWAP_UUID"}
  }
}
EOF

rm -f "$OUTDIR/stamp"
mv -f "$WORK/debian12-mbr.raw" "$WORK/debian12-gpt.raw" "$WORK/debian12-uefi.raw" \
    "$WORK/debian12-lvm.raw" "$WORK/debian12-xfs.raw" "$WORK/debian12-btrfs.raw" "$WORK/guest.json" \
    "$WORK/id_ed25519" "$WORK/id_ed25519.pub" "$OUTDIR/"
echo "$STAMP_VALUE" >"$OUTDIR/stamp"
log "done: $(du -h --apparent-size "$OUTDIR"/debian12-*.raw | tr '\n' ' ')"
log "allocated: $(du -h "$OUTDIR"/debian12-*.raw | tr '\n' ' ')"
