#!/usr/bin/env bash
# Boot a raw disk image under qemu (TCG; BIOS/SeaBIOS or UEFI/OVMF) with its disk on a
# chosen bus and wait for a login prompt on the serial console.
#
# Usage: boot-check.sh IMAGE [TIMEOUT_SECONDS]
#
# IMAGE is never written: qemu runs with snapshot=on (writes go to a temporary
# overlay). Exit 0 as soon as "login:" appears on ttyS0; exit 1 with the tail of the
# console log on timeout or when qemu exits first; exit 2 on bad arguments.
# Environment:
#   SNF_BOOT_LOG=FILE      keep the serial console log in FILE (default: a temp file,
#                          removed on success)
#   SNF_BOOT_MEM=MiB       guest memory (default 1024)
#   SNF_BOOT_DISK_IF=BUS   disk bus (default virtio): virtio (virtio-blk), scsi
#                          (virtio-scsi), sata (AHCI), nvme or ide
#   SNF_BOOT_FIRMWARE=bios|uefi   firmware (default bios): SeaBIOS, or OVMF from
#                          Debian's ovmf package (its variable store copied per boot)
set -euo pipefail

usage() { echo "usage: $0 IMAGE [TIMEOUT_SECONDS]" >&2; exit 2; }
if [ $# -lt 1 ] || [ $# -gt 2 ]; then usage; fi
IMAGE=$1
TIMEOUT=${2:-300}
[[ "$TIMEOUT" =~ ^[1-9][0-9]*$ ]] || usage
[ -f "$IMAGE" ] || [ -b "$IMAGE" ] || { echo "boot-check.sh: $IMAGE: no such image" >&2; exit 2; }
command -v qemu-system-x86_64 >/dev/null || {
    echo "boot-check.sh: qemu-system-x86_64 not found (run scripts/guest/install-qemu-system.sh)" >&2
    exit 1
}
MEM=${SNF_BOOT_MEM:-1024}
DISK_IF=${SNF_BOOT_DISK_IF:-virtio}
FIRMWARE=${SNF_BOOT_FIRMWARE:-bios}
OVMF_DIR=/usr/share/OVMF

# The disk, never written (snapshot=on), on the bus asked for; bootindex so the firmware
# boots it whatever bus it is on.
DRIVE="file=$IMAGE,format=raw,snapshot=on,cache=unsafe"
case "$DISK_IF" in
    virtio) DISK=(-drive "$DRIVE,if=none,id=d0" -device virtio-blk-pci,drive=d0,bootindex=1) ;;
    scsi) DISK=(-device virtio-scsi-pci,id=scsi0 -drive "$DRIVE,if=none,id=d0"
        -device scsi-hd,drive=d0,bus=scsi0.0,bootindex=1) ;;
    sata) DISK=(-device ahci,id=ahci0 -drive "$DRIVE,if=none,id=d0"
        -device ide-hd,drive=d0,bus=ahci0.0,bootindex=1) ;;
    nvme) DISK=(-drive "$DRIVE,if=none,id=d0" -device nvme,drive=d0,serial=snfboot0,bootindex=1) ;;
    ide) DISK=(-drive "$DRIVE,if=ide") ;;
    *) echo "boot-check.sh: SNF_BOOT_DISK_IF=$DISK_IF: not virtio, scsi, sata, nvme or ide" >&2; exit 2 ;;
esac

TMP=$(mktemp -d)
case "$FIRMWARE" in
    bios) FW=() ;;
    uefi)
        [ -f "$OVMF_DIR/OVMF_CODE_4M.fd" ] && [ -f "$OVMF_DIR/OVMF_VARS_4M.fd" ] || {
            echo "boot-check.sh: $OVMF_DIR/OVMF_CODE_4M.fd not found (apt-get install ovmf)" >&2
            rm -rf "$TMP"
            exit 1
        }
        # The firmware writes its variables (boot entries): a private copy each boot.
        cp "$OVMF_DIR/OVMF_VARS_4M.fd" "$TMP/vars.fd"
        FW=(-drive "if=pflash,format=raw,unit=0,readonly=on,file=$OVMF_DIR/OVMF_CODE_4M.fd"
            -drive "if=pflash,format=raw,unit=1,file=$TMP/vars.fd") ;;
    *) echo "boot-check.sh: SNF_BOOT_FIRMWARE=$FIRMWARE: not bios or uefi" >&2; rm -rf "$TMP"; exit 2 ;;
esac
LOG=${SNF_BOOT_LOG:-$TMP/console.log}
: >"$LOG"
QEMU_PID=
cleanup() {
    local rc=$?
    if [ -n "$QEMU_PID" ] && kill -0 "$QEMU_PID" 2>/dev/null; then
        kill "$QEMU_PID" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$QEMU_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$QEMU_PID" 2>/dev/null || true
        wait "$QEMU_PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

START=$(date +%s.%N)
# snapshot=on: qemu keeps all guest writes in a temporary overlay, IMAGE stays as is.
# -no-reboot turns a kernel panic's reboot into a qemu exit, so we fail fast.
# timeout(1) is a backstop: should this script be SIGKILLed (no trap runs), qemu still
# dies shortly after the deadline instead of lingering.
timeout --kill-after=10 $((TIMEOUT + 30)) qemu-system-x86_64 -accel tcg -machine pc -m "$MEM" -smp 1 \
    -nodefaults -display none -vga none -no-reboot "${FW[@]}" "${DISK[@]}" \
    -nic user,model=virtio-net-pci \
    -serial "file:$LOG" -monitor none \
    >"$TMP/qemu.out" 2>&1 &
QEMU_PID=$!

deadline=$(($(date +%s) + TIMEOUT))
while :; do
    if grep -aq 'login:' "$LOG"; then
        END=$(date +%s.%N)
        echo "boot-check.sh: login prompt after $(awk "BEGIN{printf \"%.1f\", $END - $START}") s: $IMAGE" >&2
        exit 0
    fi
    if ! kill -0 "$QEMU_PID" 2>/dev/null; then
        echo "boot-check.sh: qemu exited before a login prompt ($IMAGE)" >&2
        cat "$TMP/qemu.out" >&2
        echo "---- last console lines ----" >&2
        tail -n 40 "$LOG" | tr -d '\r' | sed 's/\x1b\[[0-9;?]*[A-Za-z]//g' >&2
        exit 1
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "boot-check.sh: no login prompt within $TIMEOUT s ($IMAGE)" >&2
        echo "---- last console lines ----" >&2
        tail -n 40 "$LOG" | tr -d '\r' | sed 's/\x1b\[[0-9;?]*[A-Za-z]//g' >&2
        exit 1
    fi
    sleep 0.5
done
