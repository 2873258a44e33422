#!/usr/bin/env bash
# Install qemu-system-x86 (with the BIOS firmware a BIOS boot needs) so the real-guest
# tests can boot images under TCG. Idempotent; must run as root.
#
# Why this is not a plain `apt-get install qemu-system-x86`: the machine image ships
# qemu-utils 10.x from bookworm-backports, and that qemu-utils declares
# `Breaks: qemu-system-common (<< 1:8.0)`, so bookworm's qemu-system-x86 7.2 cannot be
# installed beside it. We prefer adding bookworm-backports and installing the matching
# qemu-system-x86 from there (qemu-img keeps its version); only when that fails do we
# fall back to bookworm's 7.2 and downgrade qemu-utils to the same version.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "install-qemu-system.sh: run me as root (apt-get is needed)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
APT=(apt-get -y -q -o DPkg::Lock::Timeout=900)

have_all() {
    command -v qemu-system-x86_64 >/dev/null &&
        [ -e /usr/share/seabios/bios-256k.bin ] &&
        qemu-system-x86_64 -accel help >/dev/null 2>&1 &&
        qemu-img --version >/dev/null 2>&1
}

if have_all; then
    echo "install-qemu-system.sh: already installed: $(qemu-system-x86_64 --version | head -1)" >&2
    exit 0
fi

installed_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || true; }
utils_version=$(installed_version qemu-utils)
echo "install-qemu-system.sh: qemu-utils installed: ${utils_version:-none}" >&2

try_backports() {
    local list=/etc/apt/sources.list.d/snf-bookworm-backports.sources
    if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        cat >"$list" <<'EOF'
# Added by snf-image-creator scripts/guest/install-qemu-system.sh: qemu-system-x86
# matching the machine's qemu-utils from bookworm-backports.
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    fi
    "${APT[@]}" update || return 1
    local bp
    bp=$(apt-cache madison qemu-system-x86 | awk -F'|' '/bookworm-backports/ {gsub(/ /,"",$2); print $2; exit}')
    if [ -z "$bp" ]; then
        echo "install-qemu-system.sh: no qemu-system-x86 in bookworm-backports" >&2
        return 1
    fi
    # Only take backports when it matches the installed qemu-utils (or none is
    # installed): mixing versions is exactly what the Breaks: forbids.
    if [ -n "$utils_version" ] && [ "$bp" != "$utils_version" ]; then
        echo "install-qemu-system.sh: backports has $bp, qemu-utils is $utils_version" >&2
        return 1
    fi
    "${APT[@]}" install --no-install-recommends -t bookworm-backports \
        "qemu-system-x86=$bp" "qemu-system-common=$bp" "qemu-system-data=$bp" \
        "qemu-utils=$bp" seabios ipxe-qemu
}

try_downgrade() {
    # bookworm's own qemu-system-x86 needs a qemu-utils of the same version.
    local v
    v=$(apt-cache policy qemu-system-x86 | awk '/Candidate:/ {print $2}')
    [ -n "$v" ] && [ "$v" != "(none)" ] || return 1
    echo "install-qemu-system.sh: falling back to qemu $v (qemu-utils changes version)" >&2
    "${APT[@]}" install --no-install-recommends --allow-downgrades \
        "qemu-system-x86=$v" "qemu-utils=$v" qemu-system-data seabios ipxe-qemu
}

try_backports || try_downgrade

if ! have_all; then
    echo "install-qemu-system.sh: qemu-system-x86_64 or qemu-img does not work after install" >&2
    exit 1
fi
echo "install-qemu-system.sh: $(qemu-system-x86_64 --version | head -1)" >&2
echo "install-qemu-system.sh: $(qemu-img --version | head -1)" >&2
