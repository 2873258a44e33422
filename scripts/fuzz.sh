#!/bin/bash
# Coverage-guided fuzzing (libFuzzer, stable Rust) of the parsers that read untrusted
# bytes: one target per parser in fuzz/fuzz_targets/.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET ...]   (default 60 s, every target)
#
# Builds the targets into target/fuzz (libfuzzer-sys with the sanitizer-coverage passes
# that `cargo fuzz build -s none` would pass, debug assertions and overflow checks on),
# then runs each in turn for the given time, starting from its seeds (fuzz/corpus/T,
# kept small and committed) and the corpus grown by earlier runs (target/fuzz/corpus/T).
# A panic, a hang (-timeout) or runaway memory (-rss_limit_mb) is a finding: its input
# is kept in target/fuzz/findings/T/; replay it with `target/fuzz/bin/T FILE`.
# Prints per target the executions, coverage and findings, then a summary line.
#
# Exit status: 0 no finding, 1 build failure or usage, 3 at least one finding.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-60}
if ! [[ $secs =~ ^[0-9]+$ ]] || [ "$secs" -eq 0 ]; then
  echo "usage: $0 [SECONDS_PER_TARGET] [TARGET ...]" >&2
  exit 1
fi
shift || true

host=$(rustc -vV | sed -n 's/^host: //p')
out=$root/target/fuzz
# Without --target the flags would also instrument the build scripts, which then fail
# to link (no libFuzzer in them).
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
echo "building the fuzz targets ..."
if ! cargo build --quiet --release --manifest-path "$root/fuzz/Cargo.toml" \
    --target "$host" --target-dir "$out" --bins; then
  echo "fuzz: build failed" >&2
  exit 1
fi
mkdir -p "$out/bin"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(ls "$root/fuzz/fuzz_targets" | sed -n 's/\.rs$//p')
fi

printf '%-14s %10s %8s %8s  %s\n' target execs cov corpus findings
total_execs=0 total_findings=0 bad=()
for t in "${targets[@]}"; do
  bin=$out/$host/release/$t
  [ -x "$bin" ] || { echo "fuzz: no target $t" >&2; exit 1; }
  ln -sf "$bin" "$out/bin/$t"
  work=$out/corpus/$t findings=$out/findings/$t log=$out/logs/$t.log
  # Only this run's findings count; older ones are fixed or already reported.
  rm -rf "$findings"
  mkdir -p "$work" "$findings" "$out/logs" "$root/fuzz/corpus/$t"
  # libFuzzer stops at the first finding; that exit status is read from the files left.
  "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=73728 \
    -print_final_stats=1 -artifact_prefix="$findings/" \
    "$work" "$root/fuzz/corpus/$t" >"$log" 2>&1 || true
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  if [ -z "$execs" ]; then
    execs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
  fi
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
  corp=$(find "$work" -type f | wc -l)
  found=$(find "$findings" -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) | wc -l)
  printf '%-14s %10s %8s %8s  %s\n' "$t" "${execs:-0}" "${cov:-?}" "$corp" "$found"
  total_execs=$((total_execs + ${execs:-0}))
  if [ "$found" -gt 0 ]; then
    total_findings=$((total_findings + found))
    bad+=("$t")
    grep -m1 -E 'panicked at|ERROR: libFuzzer' "$log" | sed 's/^/    /' || true
  fi
done
echo "fuzz: ${#targets[@]} targets, ${secs}s each, $total_execs executions, $total_findings findings${bad:+ (${bad[*]}; inputs in target/fuzz/findings/, logs in target/fuzz/logs/)}"
[ "$total_findings" -eq 0 ] || exit 3
