#!/usr/bin/env bash
# Install everything snf-image-creator needs to build and to run its tests on a fresh
# Debian 12 machine. Safe to run again: it only installs what is missing. Must run as
# root (it uses apt-get). scripts/example.sh and the benchmarks build what they run.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh: run me as root (apt-get is needed)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
mapfile -t wanted < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' scripts/apt-packages.txt)
missing=()
for p in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup.sh: installing ${missing[*]}" >&2
    apt-get update -qq
    apt-get install -y -qq -o DPkg::Lock::Timeout=900 "${missing[@]}" >/dev/null
fi

# qemu-system-x86 (the boot tests) must match the installed qemu-utils; the script
# picks the right suite.
scripts/guest/install-qemu-system.sh

# The libguestfs appliance, once qemu-system-x86 is the right one.
mapfile -t wanted < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' scripts/apt-packages-appliance.txt)
missing=()
for p in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup.sh: installing ${missing[*]}" >&2
    apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=900 "${missing[@]}" >/dev/null
fi

# FUSE for unprivileged users (--host-run and the TUI's Mount without root go through
# fusermount3): Debian's udev rule makes /dev/fuse 0666, but machines without udev
# (containers, chroots) leave the node root-only.
if [ -c /dev/fuse ] && [ "$(stat -c %a /dev/fuse)" != 666 ]; then
    chmod 0666 /dev/fuse
fi
