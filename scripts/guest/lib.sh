# shellcheck shell=bash
# Shared helpers for the scripts in scripts/guest/ (sourced, not run).

# attach_loop FILE: attach FILE to a free loop device with partition nodes, print it.
# The kernel on these machines has no partition-table parsers compiled in (losetup -P
# scans and finds nothing), so the partitions are added by partx through BLKPG, which
# works whatever the kernel's parsers are; devtmpfs then creates /dev/loopNpM.
attach_loop() {
    local file=$1 loop last
    loop=$(losetup -fP --show "$file") || return 1
    last=$(partx -g -o NR "$loop" 2>/dev/null | tail -1 | tr -d ' ')
    if [ -n "$last" ] && ! [ -b "${loop}p$last" ]; then
        # Not partx -u: it skips logical partitions (util-linux 2.38).
        partx -d "$loop" 2>/dev/null || true
        partx -a "$loop" || { losetup -d "$loop"; return 1; }
        for _ in $(seq 50); do [ -b "${loop}p$last" ] && break; sleep 0.1; done
        if ! [ -b "${loop}p$last" ]; then
            echo "attach_loop: ${loop}p$last did not appear" >&2
            losetup -d "$loop"
            return 1
        fi
    fi
    echo "$loop"
}

# detach_loop LOOP: drop the partition nodes partx added, then the loop device.
detach_loop() {
    partx -d "$1" 2>/dev/null || true
    losetup -d "$1"
}
