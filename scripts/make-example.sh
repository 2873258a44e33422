#!/usr/bin/env bash
# Make a small example disk image: an MBR disk with a Debian-like ext4 root filesystem
# (files only, enough to be recognised, with logs, caches, history and secrets for the
# system preparation to clean) and a swap partition last. No root needed.
# Usage: make-example.sh OUTPUT.raw
set -euo pipefail
out=${1:?usage: make-example.sh OUTPUT.raw}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
t=$work/tree
root_uuid=6e1a2f3c-8d3b-4a5e-9f0a-1b2c3d4e5f60
swap_uuid=0f5b7c1e-2a3d-4e6f-8a9b-c0d1e2f3a4b5

mkdir -p "$t"/{etc/ssh,etc/default,etc/udev/rules.d,boot/grub,root,home/user,tmp,var/tmp,var/log/apt,var/cache/apt/archives,var/lib/dbus,usr/sbin,usr/bin}
cat >"$t/etc/os-release" <<'OS'
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
OS
echo 12.8 >"$t/etc/debian_version"
echo example >"$t/etc/hostname"
cat >"$t/etc/passwd" <<'PW'
root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
sshd:x:100:65534::/run/sshd:/usr/sbin/nologin
user:x:1000:1000:Example User,,,:/home/user:/bin/bash
PW
# Password "example" for both accounts (SHA-512 crypt).
hash='$6$snfexample$shDbKN1m1w6yUwL.3Guuy.vnKBC8fEoT.QDYLmA6uQw0Do0HRCaDhFpxwtfd3QN.lZqdyx4pg54azKlyJYtJU.'
cat >"$t/etc/shadow" <<SH
root:$hash:19700:0:99999:7:::
daemon:*:19700:0:99999:7:::
sshd:!:19700:0:99999:7:::
user:$hash:19700:0:99999:7:::
SH
chmod 0640 "$t/etc/shadow"
cp "$t/etc/shadow" "$t/etc/shadow-"
printf 'root:x:0:\nuser:x:1000:\n' >"$t/etc/group"
cat >"$t/etc/fstab" <<FS
# /etc/fstab: static file system information.
UUID=$root_uuid /    ext4 errors=remount-ro 0 1
UUID=$swap_uuid none swap sw                0 0
FS
printf 'Port 22\n' >"$t/etc/ssh/sshd_config"
printf 'GRUB_DEFAULT=0\nGRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX=""\n' >"$t/etc/default/grub"
printf 'set timeout=5\nmenuentry "Debian" {\n  linux /boot/vmlinuz-6.1.0-28-amd64 root=UUID=%s ro quiet\n}\n' "$root_uuid" >"$t/boot/grub/grub.cfg"
: >"$t/boot/config-6.1.0-28-amd64"
echo 0123456789abcdef0123456789abcdef >"$t/etc/machine-id"
cp "$t/etc/machine-id" "$t/var/lib/dbus/machine-id"
printf 'SUBSYSTEM=="net", ATTR{address}=="52:54:00:12:34:56", NAME="eth0"\n' >"$t/etc/udev/rules.d/70-persistent-net.rules"
for i in 1 2 3; do echo "Nov 25 10:0$i:00 example kernel: message $i" >>"$t/var/log/syslog"; done
echo "Start-Date: 2026-11-25" >"$t/var/log/apt/history.log"
head -c 65536 /dev/urandom >"$t/var/cache/apt/archives/example_1.0_amd64.deb"
echo junk >"$t/tmp/junk"
echo "ls -la; cat /etc/shadow" >"$t/root/.bash_history"
echo "sudo rm -rf /" >"$t/home/user/.bash_history"
mkdir -p "$t/home/user/.ssh"
echo "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleKeyExampleKeyExampleKeyExample user@example" >"$t/home/user/.ssh/authorized_keys"
chmod 0700 "$t/home/user/.ssh" "$t/root"

rm -f "$out"
truncate -s 320M "$out"
sfdisk --quiet "$out" <<'PT'
label: dos
label-id: 0x5e1f00d1
start=2048, size=507904, type=83, bootable
start=509952, size=145408, type=82
PT
mke2fs -q -F -t ext4 -U "$root_uuid" -L root -E offset=$((2048 * 512)) -d "$t" "$out" $((507904 / 2))k
mkswap -q -U "$swap_uuid" "$work/swap" $((145408 / 2)) >/dev/null 2>&1 || {
    truncate -s $((145408 * 512)) "$work/swap"; mkswap -q -U "$swap_uuid" "$work/swap" >/dev/null
}
dd if="$work/swap" of="$out" bs=512 seek=509952 conv=notrunc,sparse status=none
echo "$out"
