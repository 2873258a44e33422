#!/bin/bash
# Exit 0 when the libguestfs appliance can use KVM here, 1 otherwise (the benchmarks'
# copy of the tool's own probe, crates/guestfs/src/kvm.rs). /dev/kvm opening is not
# enough: nested KVM on some hosts aborts qemu, on others runs the firmware and then
# hangs the guest kernel, and libguestfs waits for that appliance forever. So the
# appliance's kernel is booted under KVM without a root filesystem, and must reach its
# "cannot mount root" panic within 5 s (about 1 s where KVM works, 5 s under TCG).
#
#   scripts/kvm-works.sh && echo "KVM" || export LIBGUESTFS_BACKEND_SETTINGS=force_tcg
set -u
[ -w /dev/kvm ] || exit 1
command -v qemu-system-x86_64 >/dev/null || exit 1
kernel=${SUPERMIN_KERNEL:-}
if [ -z "$kernel" ]; then
    cached=${LIBGUESTFS_CACHEDIR:-${TMPDIR:-/var/tmp}}/.guestfs-$(id -u)/appliance.d/kernel
    if [ -f "$cached" ]; then
        kernel=$cached
    else
        kernel=$(ls -t /boot/vmlinuz-* 2>/dev/null | head -1)
    fi
fi
[ -n "$kernel" ] || exit 1
timeout 5 qemu-system-x86_64 -accel kvm -cpu max -m 256 -nodefaults -display none \
    -no-reboot -serial stdio -append "console=ttyS0 panic=-1 edd=off quiet" \
    -kernel "$kernel" </dev/null 2>/dev/null | grep -q -m1 "Kernel panic"
