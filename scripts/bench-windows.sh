#!/usr/bin/env bash
# Benchmark: snf-mkimage on a Windows-shaped NTFS guest (BIOS: System Reserved + a 2 GiB
# C: made by mkntfs, a generalized Windows 10 registry, ~1 GB of files): inspection,
# the offline Windows operations and the NTFS shrink. Goal: under 3 s for the three
# (the original boots Windows in a VM: minutes).
#
# Each figure is one run of the binary: --print-metadata (inspection alone), then -o
# with --no-sysprep (inspection + dump), with every operation but shrink, and with all;
# the differences are the operations and the shrink. The floor beside them is
# cp --sparse=always + md5sum of the source.
#
# Usage: scripts/bench-windows.sh [FILES]   (FILES MiB of data, default 1000)
# Needs root (the guest is filled through a FUSE ntfs-3g mount). Leaves nothing behind.
set -euo pipefail
cd "$(dirname "$0")/.."
FILES=${1:-1000}
WORK=$(mktemp -d /var/tmp/bench-windows.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

cargo build --release -q -p snf-mkimage
cargo build --release -q -p snf-testkit --example windows_guest
BIN=target/release/snf-mkimage

now() { date +%s.%N; }
calc() { python3 -c "print($1)"; }
mib() { calc "f'{$1 / 1048576:.0f} MiB'"; }

t0=$(now)
SRC=$(target/release/examples/windows_guest "$WORK" 2048 "$FILES")
echo "guest: $SRC ($(mib "$(stat -c %s "$SRC")"), $(mib $(($(stat -c %b "$SRC") * 512))) allocated; built in $(calc "f'{$(now) - $t0:.1f}'") s)"

# Warm the page cache so that no run pays for the first read.
cat "$SRC" >/dev/null

# timed LABEL ARGS...: run the binary, print and remember the seconds.
declare -A T
timed() {
    local label=$1 a b
    shift
    rm -f "$WORK/out.raw" "$WORK/out.raw".*
    a=$(now)
    "$BIN" -s --tmpdir "$WORK" "$@" "$SRC" >/dev/null 2>"$WORK/log" || {
        cat "$WORK/log" >&2
        exit 1
    }
    b=$(now)
    T[$label]=$(calc "$b - $a")
    printf '  %-34s %6.2f s\n' "$label" "${T[$label]}"
}
timed inspection --print-metadata
timed "inspection + dump" --no-sysprep -o "$WORK/out.raw"
timed "+ operations (no shrink)" --disable-sysprep shrink -o "$WORK/out.raw"
timed "+ operations + shrink" -o "$WORK/out.raw"
echo "  output: $(mib "$(stat -c %s "$WORK/out.raw")")"

a=$(now)
cp --sparse=always "$SRC" "$WORK/floor.raw"
md5sum "$WORK/floor.raw" >/dev/null
floor=$(calc "$(now) - $a")
rm -f "$WORK/floor.raw"

python3 - "${T[inspection]}" "${T[inspection + dump]}" "${T[+ operations (no shrink)]}" "${T[+ operations + shrink]}" "$floor" <<'PY'
import sys
insp, dump, ops, full, floor = map(float, sys.argv[1:])
o = max(ops - dump, 0.0)
s = max(full - ops, 0.0)
print(f"inspection {insp:.2f} s + operations {o:.2f} s + shrink {s:.2f} s = "
      f"{insp + o + s:.2f} s (goal < 3 s); whole run {full:.2f} s, floor (cp + md5sum) {floor:.2f} s")
PY
