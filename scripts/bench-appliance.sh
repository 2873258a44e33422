#!/usr/bin/env bash
# Benchmark: a Debian 12 guest with its root on xfs and about 1 GB used (the suite's
# debian12-xfs.raw plus DATA_MIB of files under /srv/bench-data), prepared through the
# libguestfs appliance by snf-mkimage, against
#   * the same content on ext4 (debian12-mbr.raw plus the same files), which snf-mkimage
#     prepares in-process (no appliance), and
#   * a MODEL of the original snf-image-creator's pipeline on the same xfs guest
#     (python3-guestfs, Debian's): a copy-on-write snapshot (qcow2 overlay; the original
#     uses a device-mapper snapshot, which this kernel lacks), the appliance launch,
#     inspection and metadata with the original's calls (inspect_os, the mount, its
#     is_file probes for GUIs, ls /boot, cat of passwd/shadow/sshd_config ...), every
#     default sysprep as the original makes it (one libguestfs round trip per file
#     operation: readdir/rm/truncate/scrub_file; Augeas for /etc/default/grub and
#     sysctl, where each of four operations runs aug_init("/", 0), which loads every
#     lens and parses every file of /etc it knows, in the appliance), its shrink (swap partition deleted; "Don't know how to shrink xfs"), the
#     appliance shutdown, and its dump: every byte up to the end of the last partition
#     plus 1 MiB copied to the output (sendfile in the original: zeros written too),
#     then the MD5 pass over it.
# The real original was not run: its code is Python 2 only (octal literals, iteritems,
# basestring, `print` statements) and its snapshot of a raw image is a device-mapper
# snapshot (no device-mapper in this kernel).
#
# Printed per accelerator (KVM when the appliance launches with it, else the line says
# KVM is not available; TCG always): appliance start, inspection, syspreps, total, for
# ours and the model, the ext4 run's figures beside, and the ratio ours / model against
# the goal (<= 0.60).
#
# Usage: scripts/bench-appliance.sh [GUEST_DIR]
#   GUEST_DIR defaults to $SNF_TEST_GUEST_DIR or target/test-guest (built if missing).
# Environment: DATA_MIB (default 800). Needs root (loop mounts, the guest build) and
# what scripts/setup.sh installs (python3-guestfs among it). Leaves nothing behind.
set -euo pipefail
cd "$(dirname "$0")/.."
GUEST_DIR=${1:-${SNF_TEST_GUEST_DIR:-target/test-guest}}
DATA_MIB=${DATA_MIB:-800}
[[ "$DATA_MIB" =~ ^[0-9]+$ ]] || { echo "bench-appliance.sh: DATA_MIB=$DATA_MIB: not a number" >&2; exit 2; }
if [ "$(id -u)" -ne 0 ]; then
    echo "bench-appliance.sh: needs root (loop mounts)" >&2
    exit 1
fi
# Debian's interpreter: python3-guestfs is installed for it, not for a pyenv one.
PY=/usr/bin/python3
"$PY" -c 'import guestfs' 2>/dev/null || {
    echo "bench-appliance.sh: python3-guestfs not installed (apt-get install python3-guestfs, or scripts/setup.sh)" >&2
    exit 1
}
for tool in qemu-img sfdisk mount mountpoint; do
    command -v "$tool" >/dev/null || { echo "bench-appliance.sh: $tool not found (run scripts/setup.sh)" >&2; exit 1; }
done
bash scripts/guest/build-debian.sh "$GUEST_DIR"
cargo build --release -q -p snf-mkimage
BIN=$PWD/target/release/snf-mkimage

WORK=$(mktemp -d /var/tmp/bench-appliance.XXXXXX)
MNT=$WORK/mnt
mkdir -p "$MNT"
cleanup() {
    local rc=$?
    set +e
    mountpoint -q "$MNT" && umount "$MNT"
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Partition 1's byte offset and size in IMAGE.
part1() {
    sfdisk -J "$1" | "$PY" -c 'import json,sys; t=json.load(sys.stdin)["partitiontable"]; p=t["partitions"][0]; s=t.get("sectorsize",512); print(p["start"]*s, p["size"]*s)'
}

# The data both guests get: DATA_MIB of incompressible files of 100 MiB (the last one
# the rest), from one random chunk.
head -c $((100 << 20)) /dev/urandom >"$WORK/chunk"
add_data() { # add_data IMAGE OPTS
    local off size left n=0
    read -r off size < <(part1 "$1")
    mount -o "loop,offset=$off,sizelimit=$size$2" "$1" "$MNT"
    mkdir -p "$MNT/srv/bench-data"
    left=$DATA_MIB
    while [ "$left" -gt 0 ]; do
        local mib=$((left < 100 ? left : 100))
        head -c $((mib << 20)) "$WORK/chunk" >"$MNT/srv/bench-data/file$n"
        left=$((left - mib)) n=$((n + 1))
    done
    df -h --output=used "$MNT" | tail -1 | tr -d ' '
    umount "$MNT"
}
echo "making the guests (Debian 12 + $DATA_MIB MiB under /srv/bench-data) ..." >&2
XFS=$WORK/xfs.raw EXT=$WORK/ext4.raw
cp --sparse=always "$GUEST_DIR/debian12-xfs.raw" "$XFS"
cp --sparse=always "$GUEST_DIR/debian12-mbr.raw" "$EXT"
XFS_USED=$(add_data "$XFS" "")
EXT_USED=$(add_data "$EXT" "")
rm -f "$WORK/chunk"
sync

cat >"$WORK/run.py" <<'PYEOF'
# Runs snf-mkimage, timing its stages from the moment each of its messages appears.
import json, subprocess, sys, time
binary, src, out, tmpdir = sys.argv[1:5]
t0 = time.monotonic()
p = subprocess.Popen([binary, "--tmpdir", tmpdir, "-o", out, src],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.PIPE, text=True)
lines = []
for line in p.stderr:
    lines.append((time.monotonic() - t0, line.rstrip("\n")))
rc = p.wait()
total = time.monotonic() - t0
if rc != 0:
    sys.stderr.write("".join(l + "\n" for _, l in lines))
    sys.exit("snf-mkimage failed (%d)" % rc)
def first(*needles):
    for t, l in lines:
        if any(n in l.lower() for n in needles):
            return t
    return None
def msgs():
    return [(t, l) for t, l in lines if not l.startswith("libguestfs: ")]
def first(*needles):
    for t, l in msgs():
        if any(n in l.lower() for n in needles):
            return t
    return None
# LIBGUESTFS_TRACE=1: libguestfs prints each call and its return on stderr.
trace = [(t, l[len("libguestfs: trace: "):]) for t, l in lines
         if l.startswith("libguestfs: trace: ")]
launch = [t for t, l in trace if l.startswith("launch")]
appliance = launch[-1] - launch[0] if len(launch) >= 2 else None
calls = sum(1 for _, l in trace if " = " in l)
print(json.dumps({"total": total, "inspect_end": first("preparing system", "system preparation"),
                  "sysprep_end": first("shrink"), "appliance": appliance, "calls": calls,
                  "log": [[round(t, 2), l] for t, l in msgs()]}))
PYEOF

cat >"$WORK/model.py" <<'PYEOF'
# A model of the original snf-image-creator's libguestfs work on a raw image.
import hashlib, json, os, subprocess, sys, time
import guestfs

src, workdir, tcg = sys.argv[1], sys.argv[2], sys.argv[3] == "tcg"
times = {}
t0 = time.monotonic()

# Snapshot: copy-on-write over the source (the original: a dm-snapshot).
overlay = os.path.join(workdir, "snapshot.qcow2")
subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b",
                os.path.abspath(src), overlay], check=True)

g = guestfs.GuestFS(python_return_dict=True)
g.set_backend("direct")
calls = [0]
def on_trace(_ev, _eh, buf, _arr):
    if " = " in (buf.decode(errors="replace") if isinstance(buf, bytes) else buf):
        calls[0] += 1
g.set_event_callback(on_trace, guestfs.EVENT_TRACE)
g.set_trace(1)
if tcg:
    g.set_backend_setting("force_tcg", "1")
g.add_drive_opts(overlay, format="qcow2", readonly=0)
g.set_recovery_proc(1)
tl = time.monotonic()
g.launch()
times["appliance"] = time.monotonic() - tl

# Inspection and metadata (Image.enable, OSBase.collect_metadata).
roots = g.inspect_os()
root = roots[0]
g.part_get_parttype("/dev/sda")
size = g.blockdev_getsize64("/dev/sda")
g.inspect_get_type(root); g.inspect_get_distro(root)
g.inspect_get_product_name(root)
g.inspect_get_major_version(root); g.inspect_get_minor_version(root)
def mount():
    mps = sorted(g.inspect_get_mountpoints(root).items(), key=lambda m: len(m[0]))
    for mp, dev in mps:
        g.mount_options("rw", dev, mp)
mount()
EXES = ["startx", "afterstep", "awesome", "blackbox", "cinnamon-session", "ctwm", "dwm",
        "enlightenment", "fluxbox", "startfluxbox", "flwm", "fvwm", "fvwm2", "fvwm95",
        "gnome-session", "golem", "i3", "icewm", "icewm-session", "ion", "ion2", "ion3",
        "jwm", "kahakai", "larswm", "startkde", "startlxde", "lxqt-session", "mate-session",
        "mlvwm", "mwm", "olvwm", "olwm", "openbox", "openbox-session", "particleman",
        "pekwm", "pwm", "pwm2", "pwm3", "qvwm", "rasor-session", "ratpoison", "sapphire",
        "sawfish", "sithwm", "startede", "startstump", "starttrinity", "twm", "uwm", "w9wm",
        "wmaker", "wmx", "wmi", "wmii", "windowlab", "xfce4-session", "xmonad"]
for prefix in ("", "/usr", "/usr/local"):
    for exe in EXES:
        g.is_file("%s/bin/%s" % (prefix, exe))
g.ls("/boot")
users = [l.split(":")[0] for l in g.cat("/etc/shadow").splitlines()
         if l.split(":")[1] not in ("*", "!", "!*", "")]
g.cat("/etc/passwd")
if g.is_file("/etc/ssh/sshd_config"):
    g.cat("/etc/ssh/sshd_config")
for svc in ("ssh", "sshd", "xrdp", "x2go"):
    g.is_file("/etc/systemd/system/multi-user.target.wants/%s.service" % svc, followsymlinks=True)
g.is_file("/etc/cloud/cloud.cfg"); g.is_dir("/etc/cloud/cloud.cfg.d")
g.umount_all()
times["inspect"] = time.monotonic() - tl - times["appliance"]

# The default syspreps, one round trip per file operation as the original makes them.
ts = time.monotonic()
ops, last = {}, [ts]
def lap(name):
    now = time.monotonic()
    ops[name] = round(now - last[0], 2)
    last[0] = now
mount()
def foreach(directory, action, maxdepth=None, ftype=None):
    if not g.is_dir(directory) or maxdepth == 0:
        return
    maxdepth = None if maxdepth is None else maxdepth - 1
    for f in g.readdir(directory):
        if f["name"] in (".", ".."):
            continue
        full = "%s/%s" % (directory, f["name"])
        if f["ftyp"] == "d":
            foreach(full, action, maxdepth, ftype)
        if ftype is None or f["ftyp"] == ftype:
            action(full)
foreach("/var/cache", g.rm, ftype="r")
lap("cleanup-cache")
foreach("/tmp", g.rm_rf, maxdepth=1)
foreach("/var/tmp", g.rm_rf, maxdepth=1)
lap("cleanup-tmp")
foreach("/var/log", g.truncate, ftype="r")
lap("cleanup-log")
scrub = g.feature_available(["scrub"])
homes = ["/root"] + (["/home/" + h for h in g.ls("/home")] if g.is_dir("/home") else [])
for home in homes:
    for data in (".history", ".sh_history", ".bash_history", ".zsh_history", ".gnupg",
                 ".ssh", ".kamakirc", ".kamaki.history", ".kamaki.log"):
        f = "%s/%s" % (home, data)
        act = g.scrub_file if scrub else g.rm_rf
        if g.is_file(f):
            act(f)
        elif g.is_dir(f):
            foreach(f, act, ftype="r")
lap("cleanup-userdata")
shadow = [":".join([l.split(":")[0], "!"] + l.split(":")[2:]) for l in g.cat("/etc/shadow").splitlines()]
g.write("/etc/shadow", "\n".join(shadow) + "\n")
g.rm_rf("/etc/shadow-")
lap("cleanup-passwords")
g.is_dir("/etc/acpi/events")
if g.is_file("/etc/udev/rules.d/70-persistent-net.rules"):
    g.rm("/etc/udev/rules.d/70-persistent-net.rules")
fstab = g.cat("/etc/fstab")
g.write("/etc/fstab", "\n".join(l for l in fstab.splitlines() if " swap " not in l) + "\n")
def aug(edit):
    g.aug_init("/", 0)
    try:
        edit()
        g.aug_save()
    finally:
        g.aug_close()
aug(lambda: g.aug_set("/files/etc/default/grub/GRUB_TIMEOUT", "0"))
for cfg in ("/boot/grub/grub.cfg", "/boot/grub/menu.lst", "/etc/default/grub"):
    if g.is_file(cfg):
        g.write(cfg, g.cat(cfg))
lap("change-bootmenu-timeout")
g.cat("/etc/fstab")
def ipv6():
    for what in ("default", "all"):
        g.aug_match("/files/etc/sysctl.conf/net.ipv6.conf.%s.use_tempaddr" % what)
        g.aug_match("/files/etc/sysctl.d/*/net.ipv6.conf.%s.use_tempaddr" % what)
        g.aug_set("/files/etc/sysctl.conf/net.ipv6.conf.%s.use_tempaddr" % what, "0")
aug(ipv6)
lap("disable-ipv6-privacy-extensions")
def cmdline(edit):
    def run():
        for key in ("GRUB_CMDLINE_LINUX", "GRUB_CMDLINE_LINUX_DEFAULT"):
            path = "/files/etc/default/grub/" + key
            if g.aug_match(path):
                g.aug_set(path, edit(g.aug_get(path)))
    aug(run)
cmdline(lambda c: c.rstrip('"') + ' net.ifnames=0"')
g.write("/boot/grub/grub.cfg", g.cat("/boot/grub/grub.cfg"))
lap("disable-predictable-network-interface-naming")
cmdline(lambda c: c.replace("console=ttyS0,115200n8", ""))
lap("disable-serial-console")
for f in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
    if g.is_file(f):
        g.truncate(f)
g.is_dir("/etc/NetworkManager/system-connections")
g.umount_all()
lap("the other five")
times["sysprep"] = time.monotonic() - ts
times["ops"] = ops

# Shrink (Image.shrink): the trailing swap partition goes; xfs is not shrunk.
parts = g.part_list("/dev/sda")
last = max(parts, key=lambda p: p["part_num"])
while g.vfs_type("/dev/sda%d" % last["part_num"]) == "swap":
    g.part_get_mbr_id("/dev/sda", last["part_num"])
    g.part_del("/dev/sda", last["part_num"])
    last = max(g.part_list("/dev/sda"), key=lambda p: p["part_num"])
sector = g.blockdev_getss("/dev/sda")
size = min(size, last["part_end"] + 1 + 2048 * sector)
g.umount_all(); g.sync(); g.drop_caches(3)
g.shutdown(); g.close()

# Dump: every byte up to the end, zeros included (sendfile of the snapshot device).
out = os.path.join(workdir, "model.diskdump")
subprocess.run(["qemu-img", "dd", "-f", "qcow2", "-O", "raw", "bs=1M",
                "count=%d" % (size >> 20), "if=" + overlay, "of=" + out], check=True)
os.unlink(overlay)
md5 = hashlib.md5()
with open(out, "rb") as f:
    while True:
        b = f.read(4 << 20)
        if not b:
            break
        md5.update(b)
times["total"] = time.monotonic() - t0
times["size"] = size
times["calls"] = calls[0]
times["allocated"] = os.stat(out).st_blocks * 512
os.unlink(out)
print(json.dumps(times))
PYEOF

# KVM: whether the appliance can use it here (nested KVM can abort qemu or hang the
# guest kernel; scripts/kvm-works.sh boots the appliance's kernel to tell).
ACCELS=(tcg)
if [ ! -w /dev/kvm ]; then
    echo "KVM: not available (no usable /dev/kvm): TCG only"
elif "$(dirname "$0")/kvm-works.sh"; then
    ACCELS=(kvm tcg)
else
    echo "KVM: not available (the appliance's kernel does not boot under this host's KVM): TCG only"
fi

# ours ACCEL IMAGE: snf-mkimage's figures (JSON), its output removed. TCG is forced only
# where KVM works; elsewhere the run is as a user's (a failed KVM start included).
ours() {
    local env=() dir=$WORK/ours
    mkdir -p "$dir"
    if [ "$1" = tcg ] && [ ${#ACCELS[@]} -gt 1 ]; then env=(LIBGUESTFS_BACKEND_SETTINGS=force_tcg); fi
    env LIBGUESTFS_TRACE=1 "${env[@]}" "$PY" "$WORK/run.py" "$BIN" "$2" "$dir/out.raw" "$dir"
    rm -rf "$dir"
}

echo "guests: xfs $XFS_USED used, ext4 $EXT_USED used (3 GiB disks, 256 MiB swap last)"
EXT_JSON=$(ours tcg "$EXT")
for accel in "${ACCELS[@]}"; do
    echo "running ($accel) ..." >&2
    OURS_JSON=$(ours "$accel" "$XFS")
    mkdir -p "$WORK/model"
    MODEL_JSON=$("$PY" "$WORK/model.py" "$XFS" "$WORK/model" "$accel")
    rm -rf "$WORK/model"
    "$PY" - "$accel" "$OURS_JSON" "$MODEL_JSON" "$EXT_JSON" <<'PYEOF'
import json, sys
accel, ours, model, ext = sys.argv[1], *map(json.loads, sys.argv[2:])
def stages(r):
    inspect = r["inspect_end"] or 0.0
    sysprep = (r["sysprep_end"] or r["total"]) - inspect
    return inspect, sysprep
oi, osp = stages(ours)
ei, esp = stages(ext)
oa = ours["appliance"] or 0.0
print(f"\n{accel.upper():32} appliance  inspection  syspreps     total  libguestfs calls")
print(f"  snf-mkimage, xfs (appliance) {oa:9.1f} s {oi - oa:9.1f} s {osp:8.1f} s {ours['total']:7.1f} s {ours['calls']:9d}")
print(f"  original (MODEL), xfs        {model['appliance']:9.1f} s {model['inspect']:9.1f} s "
      f"{model['sysprep']:8.1f} s {model['total']:7.1f} s {model['calls']:9d}")
print(f"  snf-mkimage, ext4 (in-process)         - {ei:9.1f} s {esp:8.2f} s {ext['total']:7.1f} s         0")
print("  the model's syspreps: " + ", ".join(f"{k} {v:.1f} s" for k, v in model["ops"].items()))
print("  (the four with Augeas each pay an aug_init(\"/\", 0) parsing all of /etc, as the original's do)")
print("  ours: inspection = from the start to the syspreps, less the appliance start; total"
      " includes the hole-punched image and its MD5. The model's dump writes %.2f GiB." % (model["size"] / 2**30))
ratio = ours["total"] / model["total"]
print(f"  ours / original model: {ratio:.2f} (goal <= 0.60: {'met' if ratio <= 0.60 else 'NOT met'})")
PYEOF
done
