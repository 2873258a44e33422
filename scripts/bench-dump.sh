#!/bin/bash
# Benchmark the diskdump path against its floor.
#
#   scripts/bench-dump.sh            time `snf-mkimage --no-sysprep -o OUT SOURCE`
#   scripts/bench-dump.sh --example  time the snf-disk example `disk_dump SOURCE OUT`
#                                    (the dump library alone, without the CLI)
#
# The source is a 4 GiB sparse raw disk with a GPT and one ext4 partition (mke2fs -d)
# holding about 1 GiB of incompressible files. The floor is
# `cp --sparse=always SRC COPY && md5sum COPY`. Targets: time ratio <= 1.3, peak RSS of
# the tool < 64 MiB. The disk holds no operating system, so the CLI runs with
# --allow-unsupported (no sysprep, no shrink: a pure dump).
#
# Page caches cannot be dropped reliably here, so everything is measured warm: the
# floor runs once unmeasured to load the source into the cache, then each command is
# measured once.
#
# Exit status: 0 targets met, 1 setup/build/run failure (or the CLI cannot do the run
# yet), 3 a target was missed.
set -euo pipefail

mode=cli
case "${1:-}" in
  --example) mode=example ;;
  "") ;;
  *) echo "usage: $0 [--example]" >&2; exit 1 ;;
esac

root=$(cd "$(dirname "$0")/.." && pwd)
for tool in sfdisk mke2fs md5sum cp /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "missing $tool: run scripts/setup.sh" >&2; exit 1; }
done

work=$(mktemp -d /var/tmp/snf-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

echo "== building ($mode, release)"
if [ "$mode" = cli ]; then
  if ! (cd "$root" && cargo build --release --bin snf-mkimage); then
    echo "cannot build snf-mkimage" >&2; exit 1
  fi
  bin="$root/target/release/snf-mkimage"
else
  (cd "$root" && cargo build --release -p snf-disk --example disk_dump) || exit 1
  bin="$root/target/release/examples/disk_dump"
fi

echo "== making the source: 4 GiB sparse disk, GPT, ext4 with ~1 GiB of random files"
src="$work/source.raw"
stage="$work/stage"
mkdir -p "$stage/data"
for i in $(seq 1 32); do
  head -c $((32 << 20)) /dev/urandom > "$stage/data/file$i.bin"
done
truncate -s 4G "$src"
printf 'label: gpt\nstart=2048, type=L\n' | sfdisk -q "$src"
part_start=$((2048 * 512))
part_kib=$(( (4 * 1024 * 1024) - 1024 - 1024 ))   # leave room for the backup GPT
mke2fs -q -F -t ext4 -E offset=$part_start -d "$stage" "$src" "${part_kib}k"
rm -rf "$stage"
echo "   $(du -h --apparent-size "$src" | cut -f1) apparent, $(du -h "$src" | cut -f1) allocated"

floor() {
  rm -f "$work/copy.raw"
  cp --sparse=always "$src" "$work/copy.raw" && md5sum "$work/copy.raw" | cut -d' ' -f1
}

echo "== warming the page cache (floor, unmeasured)"
floor >/dev/null

echo "== floor: cp --sparse=always + md5sum"
t0=$(date +%s.%N)
floor_md5=$(floor)
t1=$(date +%s.%N)
floor_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')
rm -f "$work/copy.raw"

out="$work/out/image.diskdump"
mkdir -p "$work/out"
if [ "$mode" = cli ]; then
  args=(--no-sysprep -o "$out" "$src")
  # The fixture holds no operating system, which the tool refuses without this.
  if "$bin" --help 2>&1 | grep -q -- --allow-unsupported; then
    args=(--allow-unsupported "${args[@]}")
  fi
else
  args=("$src" "$out" --tmpdir "$work")
fi
echo "== tool: $(basename "$bin") ${args[*]}"
t0=$(date +%s.%N)
if ! /usr/bin/time -v -o "$work/time.txt" "$bin" "${args[@]}" >"$work/stdout.txt" 2>"$work/stderr.txt"; then
  t1=$(date +%s.%N)
  if [ "$mode" = cli ]; then
    echo "snf-mkimage cannot do \`${args[*]}' yet:" >&2
  else
    echo "disk_dump failed:" >&2
  fi
  tail -n 3 "$work/stderr.txt" >&2
  exit 1
fi
t1=$(date +%s.%N)
tool_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')
rss_kib=$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' "$work/time.txt")
tool_md5=$(md5sum "$out" | cut -d' ' -f1)
if [ "$tool_md5" != "$floor_md5" ]; then
  echo "the dump differs from the source: md5 $tool_md5, expected $floor_md5" >&2
  exit 1
fi
if [ -f "$out.md5sum" ] && ! grep -q "^$floor_md5 " "$out.md5sum"; then
  echo "$out.md5sum does not hold the right MD5: $(cat "$out.md5sum")" >&2
  exit 1
fi

ratio=$(awk -v a="$tool_s" -v b="$floor_s" 'BEGIN {print a / b}')
rss_mib=$(awk -v k="$rss_kib" 'BEGIN {print k / 1024}')
echo
echo "measured warm (page cache not dropped), one run each"
printf 'floor (cp --sparse=always + md5sum): %6.2f s\n' "$floor_s"
printf '%-35s %6.2f s\n' "$(basename "$bin"):" "$tool_s"
printf 'ratio:                               %6.2f   (target <= 1.3)\n' "$ratio"
printf 'peak RSS:                            %6.1f MiB (target < 64)\n' "$rss_mib"
printf 'output allocated:                    %s of %s\n' \
  "$(du -h "$out" | cut -f1)" "$(du -h --apparent-size "$out" | cut -f1)"

status=0
if awk -v r="$ratio" 'BEGIN {exit !(r > 1.3)}'; then echo "MISSED: time ratio"; status=3; fi
if awk -v m="$rss_mib" 'BEGIN {exit !(m >= 64)}'; then echo "MISSED: peak RSS"; status=3; fi
[ $status = 0 ] && echo "targets met"
exit $status
