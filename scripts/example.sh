#!/usr/bin/env bash
# Make the example disk (scripts/make-example.sh) and turn it into a cloud image with
# snf-mkimage, printing the metadata and the files it wrote.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-/var/tmp/snf-example}
mkdir -p "$dir"
cargo build --release --bins
scripts/make-example.sh "$dir/example.raw" >/dev/null
target/release/snf-mkimage --force --print-metadata \
    -o "$dir/example.diskdump" "$dir/example.raw"
ls -ls "$dir"
