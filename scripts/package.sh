#!/usr/bin/env bash
# package.sh [--profile release|dev] [--check]
#
# Builds the Debian package target/debian/snf-image-creator_VERSION_ARCH.deb: both
# programs (stripped), their man pages and bash/zsh/fish completions generated from the
# clap definitions (cargo run -p xtask -- assets), the README and copyright, and the
# runtime dependencies declared: the shared libraries as dpkg-shlibdeps finds them, and
# the programs the tools run (qemu-img, e2fsck/resize2fs, losetup, fusermount3,
# eatmydata).
#
# --check then installs it with apt into a clean Debian root made by debootstrap
# (minbase, the host's suite and mirror; the .debs are cached in
# /var/cache/snf-test-debootstrap like the test guest's), and runs `snf-mkimage
# --version`, `snf-mkimage --help` and `snf-image-creator --version` in there, so the
# declared dependencies are proven to be enough. Needs root (debootstrap, chroot).
#
# --profile dev packages the test build's binaries (CI: no second, release build of
# the workspace); users want the default, release.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release check=0
while [ $# -gt 0 ]; do
    case "$1" in
        --profile) profile=${2:?--profile needs release or dev}; shift 2 ;;
        --check) check=1; shift ;;
        *) echo "usage: $0 [--profile release|dev] [--check]" >&2; exit 2 ;;
    esac
done
case "$profile" in
    release) bindir=target/release ;;
    dev) bindir=target/debug ;;
    *) echo "package.sh: unknown profile $profile" >&2; exit 2 ;;
esac

name=snf-image-creator
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
out=target/debian
deb="$out/${name}_${version}_${arch}.deb"
# Runtime programs (not libraries: dpkg-shlibdeps finds those). fdisk/gdisk and lvm2
# are only used by the tests (LVM metadata is read and written in-process). ntfs-3g
# carries ntfsresize and ntfsfix, which shrink Windows guests.
runtime_depends="e2fsprogs, qemu-utils, fuse3, mount, eatmydata, ntfs-3g"
# libguestfs0 (with supermin and a kernel) serves xfs and btrfs guests through an
# appliance; it is loaded at run time, so the programs work without it for the rest.
suggests="libguestfs0, supermin, linux-image-amd64"

cargo build -q --profile "$profile" -p snf-mkimage -p snf-image-creator
work=$(mktemp -d /var/tmp/snf-package.XXXXXX)
root=""
cleanup() {
    if [ -n "$root" ]; then
        # everything mounted under the chroot, deepest first
        awk -v r="$root" '$2 == r || index($2, r "/") == 1 { print $2 }' /proc/self/mounts |
            sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
    fi
    rm -rf "$work"
}
trap cleanup EXIT

cargo run -q --profile "$profile" -p xtask -- assets "$work/assets"

pkg="$work/pkg"
install -d "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/usr/share/man/man1" "$pkg/usr/share/doc/$name" \
    "$pkg/usr/share/bash-completion/completions" "$pkg/usr/share/zsh/vendor-completions" \
    "$pkg/usr/share/fish/vendor_completions.d"
for prog in snf-mkimage snf-image-creator; do
    install -m 0755 "$bindir/$prog" "$pkg/usr/bin/$prog"
    strip --strip-unneeded "$pkg/usr/bin/$prog"
    gzip -9n < "$work/assets/man/$prog.1" > "$pkg/usr/share/man/man1/$prog.1.gz"
    install -m 0644 "$work/assets/completions/bash/$prog" "$pkg/usr/share/bash-completion/completions/$prog"
    install -m 0644 "$work/assets/completions/zsh/_$prog" "$pkg/usr/share/zsh/vendor-completions/_$prog"
    install -m 0644 "$work/assets/completions/fish/$prog.fish" "$pkg/usr/share/fish/vendor_completions.d/$prog.fish"
done
install -m 0644 README.md "$pkg/usr/share/doc/$name/README.md"
cat > "$pkg/usr/share/doc/$name/copyright" <<'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: snf-image-creator (Rust rewrite)

Files: *
License: GPL-3.0-or-later
 On Debian systems, the complete text of the GNU General Public License version 3
 can be found in /usr/share/common-licenses/GPL-3.
EOF

# Shared-library dependencies, as Debian's own packages compute them.
mkdir -p "$work/shlibs/debian"
printf 'Source: %s\n\nPackage: %s\nArchitecture: any\n' "$name" "$name" > "$work/shlibs/debian/control"
shlibs=$(cd "$work/shlibs" && dpkg-shlibdeps -O "$pkg/usr/bin/snf-mkimage" "$pkg/usr/bin/snf-image-creator" 2>/dev/null |
    sed -n 's/^shlibs:Depends=//p')
[ -n "$shlibs" ] || { echo "package.sh: dpkg-shlibdeps found no library dependencies" >&2; exit 1; }

cat > "$pkg/DEBIAN/control" <<EOF
Package: $name
Version: $version
Architecture: $arch
Maintainer: snf-image-creator developers <snf-image-creator@localhost>
Installed-Size: $(du -sk "$pkg/usr" | cut -f1)
Depends: $shlibs, $runtime_depends
Suggests: $suggests
Section: admin
Priority: optional
Homepage: https://github.com/grnet/snf-image-creator
Description: create cloud images (diskdump) from disks and register them
 snf-mkimage turns a disk image file or a block device into a clean, small
 cloud image (a raw diskdump with its .meta, .md5sum and .variant files):
 system preparation, shrinking, and upload and registration to OpenStack
 (Keystone, Swift, Glance) or Synnefo (Astakos, Pithos, Plankton).
 snf-image-creator is the interactive terminal UI over the same library.
EOF
mkdir -p "$out"
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" >/dev/null
echo "package.sh: built $deb ($(du -h "$deb" | cut -f1)); Depends: $shlibs, $runtime_depends" >&2

[ "$check" = 1 ] || exit 0

# ---- install into a clean root and run the programs there ------------------------------
if [ "$(id -u)" -ne 0 ]; then
    echo "package.sh --check: needs root (debootstrap, chroot)" >&2
    exit 1
fi
. /etc/os-release
suite=${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release}
# The host's own Debian mirror, unless SNF_DEBIAN_MIRROR names one.
mirror=${SNF_DEBIAN_MIRROR:-$(sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)}
[ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $2 ~ /^http/ { print $2; exit }' /etc/apt/sources.list 2>/dev/null)
[ -n "$mirror" ] || { echo "package.sh --check: no Debian mirror found; set SNF_DEBIAN_MIRROR" >&2; exit 1; }
cache=${SNF_DEBOOTSTRAP_CACHE:-/var/cache/snf-test-debootstrap}
mkdir -p "$cache"
root="$work/root"
mkdir -p "$root"
echo "package.sh --check: debootstrap $suite (minbase) into a clean root" >&2
(
    # one debootstrap per cache at a time (scripts/guest/build-debian.sh shares it)
    flock 9
    debootstrap --variant=minbase --cache-dir="$cache" "$suite" "$root" "$mirror" > "$work/debootstrap.log" 2>&1
) 9>"$cache/.lock" || { tail -30 "$work/debootstrap.log" >&2; exit 1; }
mount -t proc proc "$root/proc"
cp /etc/resolv.conf "$root/etc/resolv.conf"
cp "$deb" "$root/tmp/"
in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C DEBIAN_FRONTEND=noninteractive "$@"; }
in_root apt-get update -qq > "$work/apt.log" 2>&1 || { tail -30 "$work/apt.log" >&2; exit 1; }
in_root apt-get install -y -qq --no-install-recommends "/tmp/$(basename "$deb")" >> "$work/apt.log" 2>&1 ||
    { tail -30 "$work/apt.log" >&2; exit 1; }
got=$(in_root snf-mkimage --version)
[ "$got" = "snf-mkimage $version" ] || { echo "package.sh --check: snf-mkimage --version said: $got" >&2; exit 1; }
in_root snf-mkimage --help | grep -q -- '--upload' || { echo "package.sh --check: snf-mkimage --help is incomplete" >&2; exit 1; }
in_root snf-image-creator --version | grep -qx "snf-image-creator .*" ||
    { echo "package.sh --check: snf-image-creator --version failed" >&2; exit 1; }
# the programs the tools run are there
for tool in qemu-img e2fsck resize2fs losetup fusermount3 eatmydata; do
    in_root sh -c "command -v $tool" > /dev/null || { echo "package.sh --check: $tool missing after install" >&2; exit 1; }
done
for f in /usr/share/man/man1/snf-mkimage.1.gz /usr/share/bash-completion/completions/snf-mkimage; do
    [ -s "$root$f" ] || { echo "package.sh --check: $f missing" >&2; exit 1; }
done
echo "package.sh --check: installed in a clean $suite root; snf-mkimage --version and --help run there" >&2
