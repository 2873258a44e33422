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
updated=

# install_list FILE [APT-OPTION...]: install the packages FILE lists (one per line, `#`
# comments) that are not installed yet.
install_list() {
    local file=$1 p
    shift
    local wanted missing=()
    mapfile -t wanted < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$file")
    for p in "${wanted[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "setup.sh: installing ${missing[*]}" >&2
        [ -n "$updated" ] || { apt-get update -qq; updated=1; }
        apt-get install -y -qq -o DPkg::Lock::Timeout=900 "$@" "${missing[@]}" >/dev/null
    fi
}

install_list scripts/apt-packages.txt

# qemu-system-x86 (the boot tests) must match the installed qemu-utils; the script
# picks the right suite.
scripts/guest/install-qemu-system.sh

# The libguestfs appliance, once qemu-system-x86 is the right one.
install_list scripts/apt-packages-appliance.txt --no-install-recommends

# FUSE for unprivileged users (--host-run and the TUI's Mount without root go through
# fusermount3): Debian's udev rule makes /dev/fuse 0666, but machines without udev
# (containers, chroots) leave the node root-only.
if [ -c /dev/fuse ] && [ "$(stat -c %a /dev/fuse)" != 666 ]; then
    chmod 0666 /dev/fuse
fi
