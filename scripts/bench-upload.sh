#!/bin/bash
# bench-upload.sh: upload throughput to the local Swift, ours against
# `swift upload --use-slo` (python-swiftclient) on the same file; bytes sent per image
# byte for an upload (-u) and for an upload with registration (-u -r: the data goes to
# Glance only, the side files to Swift; goal 1.0 plus the side files), and a Pithos
# re-upload of an image with one changed block (must send exactly one block).
#
# Runs through scripts/with-openstack.sh (starts/stops the local OpenStack).
# Environment: BENCH_SIZE_MB (default 512), BENCH_SEGMENT (default: the cluster's
# max_file_size, 8 MiB in the test cluster), BENCH_PROFILE=release|dev (default release).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${OS_AUTH_URL:-}" ]; then
    exec scripts/with-openstack.sh "$0" "$@"
fi
SIZE_MB=${BENCH_SIZE_MB:-512}
PROFILE=${BENCH_PROFILE:-release}
SEG=${BENCH_SEGMENT:-$(curl -s "http://127.0.0.1:${OPENSTACK_PORT_SWIFT:-8080}/info" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["swift"]["max_file_size"])')}

if ! command -v swift >/dev/null; then
    echo "installing python3-swiftclient (the swift CLI)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=900 python3-swiftclient >/dev/null
fi
if [ "$PROFILE" = release ]; then
    cargo build -q --release -p snf-cloud --example upload
    BIN=target/release/examples/upload
else
    cargo build -q -p snf-cloud --example upload
    BIN=target/debug/examples/upload
fi

work=$(mktemp -d /var/tmp/snf-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
head -c "$((SIZE_MB << 20))" /dev/urandom > "$work/image"
# warm the page cache for both contenders
cat "$work/image" > /dev/null
c_ours=bench-ours-$$ c_swift=bench-swift-$$

now() { date +%s.%N; }
t0=$(now)
"$BIN" --workers "${BENCH_WORKERS:-4}" --container "$c_ours" "$work/image" image 2> "$work/ours.log" || { cat "$work/ours.log" >&2; exit 1; }
t1=$(now)
env -u PYTHONPATH -u PYTHONHOME -u VIRTUAL_ENV swift upload --use-slo -S "$SEG" --object-name image "$c_swift" "$work/image" > "$work/swift.log" 2>&1 \
    || { cat "$work/swift.log" >&2; exit 1; }
t2=$(now)

whole=$(echo "$t1 - $t0" | bc -l) theirs=$(echo "$t2 - $t1" | bc -l)
# ours: authentication, remote checks, image upload and md5sum object; not the local
# MD5 pass the example makes first (in snf-mkimage the dump stage computes it)
ours=$(sed -n 's/^connect-and-upload-seconds //p' "$work/ours.log")
printf 'file: %d MiB, segments of %d bytes\n' "$SIZE_MB" "$SEG"
printf 'ours (snf-cloud: auth, checks, upload, md5sum object): %.2f s (%.0f MiB/s); whole example run incl. local MD5 %.2f s\n' "$ours" "$(echo "$SIZE_MB / $ours" | bc -l)" "$whole"
printf 'swift upload --use-slo -S %d:                    %.2f s (%.0f MiB/s)\n' "$SEG" "$theirs" "$(echo "$SIZE_MB / $theirs" | bc -l)"
printf 'ratio swift/ours: %.2f (>= 1 means ours is at least as fast)\n' "$(echo "$theirs / $ours" | bc -l)"
grep '^pieces-sent' "$work/ours.log" || true
per_byte() { sed -n 's/^network-bytes \([0-9]*\) per-image-byte \([0-9.]*\)$/\2 (\1 bytes)/p' "$1"; }
printf 'bytes sent per image byte, upload only (-u):          %s\n' "$(per_byte "$work/ours.log")"

# -u with -r: the image record is created in Glance first and the data goes there once
c_reg=bench-reg-$$
t0=$(now)
"$BIN" --workers "${BENCH_WORKERS:-4}" --container "$c_reg" -r "bench-$$" "$work/image" image \
    > "$work/reg.json" 2> "$work/reg.log" || { cat "$work/reg.log" >&2; exit 1; }
t1=$(now)
reg=$(sed -n 's/^connect-and-upload-seconds //p' "$work/reg.log")
printf 'bytes sent per image byte, upload and register (-r): %s\n' "$(per_byte "$work/reg.log")"
printf 'upload and register (data to Glance, side files to Swift): %.2f s (%.0f MiB/s; swift upload --use-slo alone: %.0f MiB/s)\n' \
    "$reg" "$(echo "$SIZE_MB / $reg" | bc -l)" "$(echo "$SIZE_MB / $theirs" | bc -l)"
image_id=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$work/reg.json")
token=$(curl -si -X POST "$OS_AUTH_URL/auth/tokens" -H 'Content-Type: application/json' -d "$(/usr/bin/python3 -c '
import json, os
print(json.dumps({"auth": {"identity": {"methods": ["password"], "password": {"user": {
    "name": os.environ["OS_USERNAME"], "domain": {"id": os.environ.get("OS_USER_DOMAIN_ID", "default")},
    "password": os.environ["OS_PASSWORD"]}}},
    "scope": {"project": {"name": os.environ["OS_PROJECT_NAME"], "domain": {"id": os.environ.get("OS_PROJECT_DOMAIN_ID", "default")}}}}}))
')" | sed -n 's/^[Xx]-[Ss]ubject-[Tt]oken: //p' | tr -d '\r')
curl -s -o /dev/null -X DELETE -H "X-Auth-Token: $token" "http://127.0.0.1:${OPENSTACK_PORT_GLANCE:-9292}/v2/images/$image_id" || true
env -u PYTHONPATH -u PYTHONHOME -u VIRTUAL_ENV swift delete "$c_reg" > /dev/null 2>&1 || true
env -u PYTHONPATH -u PYTHONHOME -u VIRTUAL_ENV swift delete "$c_ours" > /dev/null 2>&1 || true
env -u PYTHONPATH -u PYTHONHOME -u VIRTUAL_ENV swift delete "$c_ours"_segments > /dev/null 2>&1 || true
env -u PYTHONPATH -u PYTHONHOME -u VIRTUAL_ENV swift delete "$c_swift" > /dev/null 2>&1 || true
env -u PYTHONPATH -u PYTHONHOME -u VIRTUAL_ENV swift delete "$c_swift"_segments > /dev/null 2>&1 || true

echo "Pithos re-upload of a 16-block image with one changed block:"
cargo test -q -p snf-cloud --test synnefo reupload_with_one_changed_block_sends_one_block -- --nocapture 2>&1 | grep -E '^blocks sent|test result'
