#!/bin/bash
# Writes the seed corpora of the fuzz targets (fuzz/corpus/TARGET/): partition tables
# made by sfdisk and sgdisk, and small real-looking guest files. Run it again after
# changing a target's input format; the result is committed (keep it well under 1 MiB).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
c=$root/fuzz/corpus
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for tool in sfdisk sgdisk python3; do
  command -v "$tool" >/dev/null || { echo "make-corpus: $tool is missing" >&2; exit 1; }
done
rm -rf "$c"
mkdir -p "$c"/{mbr,gpt,probe,fstab,os_release,passwd,master_passwd,grub,cloud_init,kamakirc,clouds_yaml,cloud_http,lvm,freespace,ufs,hive}

# A disk image as a partition target input (fuzz/src/disk.rs: flags, sector count,
# then every non-zero run of sectors as [sector u32][length u16][bytes]).
encode() { # IMAGE SECTOR_SIZE OUT
  python3 - "$@" <<'EOF'
import struct, sys
img, ss, out = open(sys.argv[1], 'rb').read(), int(sys.argv[2]), sys.argv[3]
n = len(img) // ss
res = bytearray([1 if ss == 4096 else 0]) + struct.pack('<I', n)
s = 0
while s < n:
    if not any(img[s*ss:(s+1)*ss]):
        s += 1; continue
    start = s
    while s < n and (s - start + 1) * ss <= 0xffff and any(img[s*ss:(s+1)*ss]):
        s += 1
    b = img[start*ss:s*ss]
    res += struct.pack('<IH', start, len(b)) + b
open(out, 'wb').write(res)
EOF
}

mbr() { # NAME SIZE_MIB SFDISK_SCRIPT [SECTOR_SIZE]
  local ss=${4:-512}
  truncate -s "$2M" "$tmp/d" && : >"$tmp/d" && truncate -s "$2M" "$tmp/d"
  if [ "$ss" = 4096 ]; then
    # sfdisk takes the sector size from the device; a loop device is not available to
    # every user, so 4 KiB tables are written by sgdisk only (below).
    return
  fi
  echo "$3" | sfdisk -q "$tmp/d" >/dev/null
  encode "$tmp/d" "$ss" "$c/mbr/$1"
}
mbr primaries 64 $'label: dos\nlabel-id: 0x1234abcd\n,16M,83,*\n,8M,82\n,,c'
mbr logicals 64 $'label: dos\n,8M,83\n,,5\n,8M,83\n,8M,82\n,,83'
mbr one-logical 32 $'label: dos\n,,f\n,,7'
mbr empty 8 $'label: dos'
# An OpenBSD partition with a disklabel (a: FFS, b: swap) written by util-linux fdisk.
if command -v fdisk >/dev/null; then
  : >"$tmp/d" && truncate -s 32M "$tmp/d"
  echo $'label: dos\nstart=2048, size=40000, type=a6, bootable' | sfdisk -q "$tmp/d" >/dev/null
  printf 'b\ny\nn\na\n2048\n20000\nt\na\n7\nn\nb\n20001\n30000\nt\nb\n1\nw\n' |
    fdisk "$tmp/d" >/dev/null 2>&1
  encode "$tmp/d" 512 "$c/mbr/openbsd-disklabel"
fi

gpt() { # NAME SIZE_MIB SECTOR_SIZE SGDISK_ARGS...
  local name=$1 size=$2 ss=$3
  shift 3
  : >"$tmp/d" && truncate -s "${size}M" "$tmp/d"
  sgdisk "$@" "$tmp/d" >/dev/null 2>&1
  encode "$tmp/d" "$ss" "$c/gpt/$name"
}
gpt three 64 512 -n1:0:+8M -t1:ef00 -c1:EFI -n2:0:+16M -t2:8300 -c2:root -n3:0:0 -t3:8200 -A2:set:2
gpt one 16 512 -n1:0:0 -t1:8300
gpt small-table 16 512 -S 8 -n1:0:0
# sgdisk cannot make a 4 KiB-sector table in a file (it takes the sector size from a
# device); the flag byte lets the fuzzer reach 4 KiB sectors from these seeds.
# A GPT seed for mbr too: the reader must tell them apart.
cp "$c/gpt/three" "$c/mbr/gpt-three"

# Filesystem signatures: a few made by the real tools, cut to what probe reads.
for fs in "mkfs.ext4 -q -F" "mkfs.fat" "mkswap -q"; do
  : >"$tmp/p" && truncate -s 8M "$tmp/p"
  $fs "$tmp/p" >/dev/null 2>&1 || continue
  head -c 73728 "$tmp/p" >"$c/probe/${fs%% *}"
done

# LVM2 PVs (fuzz_targets/lvm.rs: [device KiB u16] then [sector u16][length u16][bytes]
# records): the label, the metadata area header and text as lvm2 2.03 writes them, with
# LVM's CRC; one copy in the middle of the buffer, one wrapping around its end.
python3 - "$c/lvm" <<'EOF'
import struct, sys
out = sys.argv[1]
TAB = [0x00000000, 0x1db71064, 0x3b6e20c8, 0x26d930ac, 0x76dc4190, 0x6b6b51f4, 0x4db26158,
       0x5005713c, 0xedb88320, 0xf00f9344, 0xd6d6a3e8, 0xcb61b38c, 0x9b64c2b0, 0x86d3d2d4,
       0xa00ae278, 0xbdbdf21c]
def crc(b, c=0xf597a6cf):
    for x in b:
        c ^= x
        c = (c >> 4) ^ TAB[c & 15]
        c = (c >> 4) ^ TAB[c & 15]
    return c
UUID = b'S0W14JM7j9d75XqMVmpxX5di8qqdwbmt'
DEV = 8 << 20
MDA_AT, MDA_SIZE = 4096, 1044480
def seg(n, start, count, pe):
    return ('segment%d {\nstart_extent = %d\nextent_count = %d\ntype = "striped"\n'
            'stripe_count = 1\nstripes = [\n"pv0", %d\n]\n}\n' % (n, start, count, pe))
def text(seqno):
    return ('vg0 {\nid = "QCGVSX-x4r5-fBUI-XJLh-Fp2w-Nu9w-rV1NfI"\nseqno = %d\nformat = "lvm2"\n'
        'status = ["RESIZEABLE", "READ", "WRITE"]\nflags = []\nextent_size = 2048\nmax_lv = 0\n'
        'max_pv = 0\nmetadata_copies = 0\n\nphysical_volumes {\n\npv0 {\n'
        'id = "S0W14J-M7j9-d75X-qMVm-pxX5-di8q-qdwbmt"\ndevice = "/dev/sda2"\n'
        'status = ["ALLOCATABLE"]\nflags = []\ndev_size = 16384\npe_start = 2048\npe_count = 7\n}\n}\n\n'
        'logical_volumes {\n\nroot {\nid = "Q57Gys-YjDR-aoA2-PNUb-7Bvz-XYUG-TAM1a2"\n'
        'status = ["READ", "WRITE", "VISIBLE"]\nflags = []\nsegment_count = 2\n\n' % seqno
        + seg(1, 0, 2, 0) + seg(2, 2, 1, 4) +
        '}\n\nswap {\nid = "eZkxrP-h7xW-42wW-YY64-d8sN-PYRF-LvPl59"\n'
        'status = ["READ", "WRITE", "VISIBLE"]\nflags = []\nsegment_count = 1\n\n'
        + seg(1, 0, 2, 2) +
        '}\n}\n}\n# Generated by LVM2\ncontents = "Text Format Volume Group"\nversion = 1\n'
        'description = "a \\"quoted\\" word"\ncreation_time = 1796431180\t# a comment\n').encode() + b'\0'
def pv(name, seqno, at):
    t = text(seqno)
    lab = bytearray(512)
    body = UUID + struct.pack('<Q', DEV) + struct.pack('<QQQQ', 1 << 20, 0, 0, 0) \
        + struct.pack('<QQQQ', MDA_AT, MDA_SIZE, 0, 0) + struct.pack('<II', 2, 1) + bytes(16)
    lab[0:8] = b'LABELONE'; lab[8:16] = struct.pack('<Q', 1); lab[20:24] = struct.pack('<I', 32)
    lab[24:32] = b'LVM2 001'; lab[32:32 + len(body)] = body
    lab[16:20] = struct.pack('<I', crc(lab[20:]))
    mh = bytearray(512)
    mh[4:20] = b' LVM2 x[5A%r0N*>'
    mh[20:40] = struct.pack('<IQQ', 1, MDA_AT, MDA_SIZE)
    mh[40:64] = struct.pack('<QQII', at, len(t), crc(t), 0)
    mh[0:4] = struct.pack('<I', crc(mh[4:]))
    recs = [(1, bytes(lab)), (MDA_AT // 512, bytes(mh))]
    first = min(len(t), MDA_SIZE - at)
    recs.append(((MDA_AT + at) // 512, t[:first]))
    if first < len(t):
        recs.append(((MDA_AT + 512) // 512, t[first:]))
    res = struct.pack('<H', DEV >> 10)
    for s, b in recs:
        res += struct.pack('<HH', s, len(b)) + b
    open(out + '/' + name, 'wb').write(res)
pv('one-copy', 7, 12288)
pv('wrapped', 8, MDA_SIZE - 1024)
EOF

printf '%s\n' '# /etc/fstab' 'UUID=0f3c9e2a-6b1d-4c55-9a7e-2d1f00c0ffee / ext4 errors=remount-ro 0 1' \
  'PARTUUID=1234abcd-05 none swap sw 0 0' 'LABEL=EFI /boot/efi vfat umask=0077 0 1' \
  '/dev/sda1 /boot ext2 defaults 0 2' '/dev/disk/by-label/my\x20data /srv/my\040data ext4 defaults 0 2' \
  'tmpfs /tmp tmpfs defaults 0 0' 'PARTLABEL=root /mnt auto noauto 0 0' >"$c/fstab/debian"
printf '/dev/vda2 / xfs defaults 0 0\n/dev/vda1 /boot xfs defaults 0 0\n' >"$c/fstab/vda"

# Guest files: sections in the target's FILES order, separated by NUL.
sec() { local out=$1; shift; : >"$out"; local first=1; for s in "$@"; do
  [ $first = 1 ] || printf '\0' >>"$out"; first=0; printf '%s' "$s" >>"$out"; done; }
sec "$c/os_release/debian" $'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n' \
  $'DISTRIB_ID=Debian\nDISTRIB_RELEASE=12\n' "" "" "" $'12.5\n'
sec "$c/os_release/ubuntu-link" $'@link:../usr/lib/os-release' "" \
  $'NAME="Ubuntu"\nVERSION_ID="22.04"\nID=ubuntu\nID_LIKE=debian\nPRETTY_NAME="Ubuntu 22.04.4 LTS"\n'
sec "$c/os_release/centos" "" "" "" $'CentOS Linux release 7.9.2009 (Core)\n'
sec "$c/os_release/suse" "" "" "" "" $'SUSE Linux Enterprise Server 11 (x86_64)\nVERSION = 11\nPATCHLEVEL = 4\n'
sec "$c/os_release/slackware" "" "" "" "" "" "" $'Slackware 15.0\n'
sec "$c/os_release/freebsd" "" "" "" "" "" "" "" "" "" $'#!/bin/sh\nUSERLAND_VERSION="13.2-RELEASE-p4"\n'

sec "$c/passwd/debian" $'root:$6$saltsalt$abcdefghij:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\nalice:$y$j9T$abc$def:19000:0:99999:7:::\nbob:!$6$x$y:19000:0:99999:7:::\n' \
  $'root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000:Alice:/home/alice:/bin/bash\nbob:x:1001:1001::/home/bob:/bin/sh\n' \
  $'root:x:0:\nsudo:x:27:alice,bob\nalice:x:1000:\n' $'root:*::\nsudo:*::alice,bob\n' \
  $'UID_MIN 1000\nUID_MAX 60000\nENCRYPT_METHOD SHA512\n' $'alice:100000:65536\n' $'root:$1$old$hash:18000:0:99999:7:::\n'

printf '\0' >"$tmp/f"
sec "$tmp/m" $'root:$6$salt$hash:0:0::0:0:Charlie &:/root:/bin/csh\ntoor:*:0:0::0:0:Bourne-again Superuser:/root:\nalice:$2b$08$abcdefghijklmnopqrstuv:1001:1001::0:0:Alice:/home/alice:/bin/sh\n# comment\n' \
  $'root:*:0:0:Charlie &:/root:/bin/csh\n' $'sshd_enable="YES"\nhostname="bsd"\n' $'sshd_enable="NO"\n' "" $'Port 2222\nPermitRootLogin yes\n'
cat "$tmp/f" "$tmp/m" >"$c/master_passwd/freebsd"
printf '\x01%s' $'root:$2b$10$abc:0:0:daemon:0:0:Charlie &:/root:/bin/ksh\n' >"$c/master_passwd/openbsd"

sec "$c/grub/debian" $'GRUB_DEFAULT=0\nGRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX_DEFAULT="quiet console=ttyS0,115200n8"\nGRUB_CMDLINE_LINUX="net.ifnames=0 biosdevname=0"\nGRUB_TERMINAL="console serial"\n' \
  $'set timeout=5\nmenuentry \'Debian\' {\n\tlinux /vmlinuz root=/dev/sda1 ro console=ttyS0 quiet\n\tinitrd /initrd.img\n}\n' \
  $'default 0\ntimeout 5\nserial --unit=0 --speed=115200\nterminal serial console\ntitle Debian\n\troot (hd0,0)\n\tkernel /vmlinuz root=/dev/sda1 ro console=ttyS0\n' \
  "" $'DEFAULT linux\nTIMEOUT 50\nLABEL linux\n  KERNEL /vmlinuz\n  APPEND root=/dev/sda1 console=ttyS0\n' "" \
  $'/dev/sda1 / ext4 errors=remount-ro 0 1\n/dev/sda5 none swap sw 0 0\nUUID=abcd /home ext4 defaults 0 2\n' \
  $'net.ipv6.conf.all.use_tempaddr = 2\n' $'SELINUX=enforcing\n'

sec "$c/cloud_init/ubuntu" $'users:\n  - default\n  - name: bob\n    inactive: false\n  - name: sys\n    system: true\nsystem_info:\n  default_user:\n    name: ubuntu\n    lock_passwd: true\n  distro: ubuntu\ndisable_root: true\n' \
  $'users: [default, alice]\n' $'system_info: {default_user: {name: debian}}\nusers: "default, carol"\n' \
  $'root:x:0:0:root:/root:/bin/bash\nubuntu:x:1000:1000::/home/ubuntu:/bin/bash\n'

printf '%s\n' '[global]' 'default_cloud = okeanos' 'colors = off' '' '[cloud "okeanos"]' \
  'url = https://accounts.okeanos.grnet.gr/identity/v2.0' 'token = abcdef0123456789' '' \
  '[cloud "local"]' 'url = http://127.0.0.1:5000/v3' 'token = t' 'description = a test cloud' >"$c/kamakirc/two"
printf '%s\n' '[global]' 'default_cloud = x' 'url = https://old-style/' 'token = old' >"$c/kamakirc/old-style"

sec "$c/clouds_yaml/two" $'clouds:\n  devstack:\n    auth:\n      auth_url: http://127.0.0.1/identity\n      username: demo\n      project_name: demo\n      user_domain_id: default\n      project_domain_id: default\n    region_name: RegionOne\n    identity_api_version: 3\n    interface: public\n  appcred:\n    auth_type: v3applicationcredential\n    auth:\n      auth_url: https://keystone.example:5000/v3\n      application_credential_id: abc\n    verify: false\n' \
  $'clouds:\n  devstack:\n    auth:\n      password: secret\n  appcred:\n    auth:\n      application_credential_secret: s3cret\n'

# Cloud answers, in the order the client asks (see fuzz_targets/cloud_http.rs).
v3tok='{"token":{"user":{"id":"u1","name":"demo"},"project":{"id":"p1"},"catalog":[{"type":"object-store","name":"swift","endpoints":[{"interface":"public","region_id":"RegionOne","url":"http://127.0.0.1:1/v1/AUTH_p1"}]},{"type":"image","name":"glance","endpoints":[{"interface":"public","url":"http://127.0.0.1:1/image"}]}]}}'
printf '\x01%s\n\n%s\0%s\0%s\0%s\0%s' "201
X-Subject-Token: tok" "$v3tok" "200

{\"swift\":{\"max_file_size\":5368709122,\"min_segment_size\":1}}" "404

" "404

" "404

" >"$c/cloud_http/keystone-v3"
v2tok='{"access":{"token":{"id":"tok","tenant":{"id":"t1"}},"user":{"id":"u-uuid","name":"user@example.org"},"serviceCatalog":[{"type":"object-store","name":"pithos_object-store","endpoints":[{"publicURL":"https://pithos.example/object-store/v1","region":"default"}]},{"type":"image","name":"plankton","endpoints":[{"publicURL":"https://cyclades.example/image/v1.0"}]}]}}'
printf '\x00%s\n\n%s\0%s\0%s' "200" "$v2tok" "200
X-Container-Block-Size: 4194304
X-Container-Block-Hash: sha256

" "201

[]" >"$c/cloud_http/astakos-v2"
printf '\x02%s' '300

{"versions":{"values":[{"id":"v3.14","status":"stable","links":[{"rel":"self","href":"http://127.0.0.1:1/identity/v3/"}]}]}}' >"$c/cloud_http/discovery"

# xfs and btrfs volumes for the free-space readers (fuzz_targets/freespace.rs: [kind]
# [MiB] then [sector u32][length u16][bytes] records of every non-zero run of sectors).
# mkfs.xfs makes filesystems under 300 MB only for its test suite's environment.
if command -v mkfs.xfs >/dev/null && command -v mkfs.btrfs >/dev/null; then
  fsseed() { # NAME KIND MIB
    python3 - "$tmp/v" "$2" "$3" "$c/freespace/$1" <<'EOF'
import struct, sys
img, kind, mib, out = open(sys.argv[1], 'rb').read(), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
res = bytearray([kind, mib])
n, s = len(img) // 512, 0
while s < n:
    if not any(img[s*512:(s+1)*512]):
        s += 1; continue
    start = s
    while s < n and (s - start + 1) * 512 <= 0xffff and any(img[s*512:(s+1)*512]):
        s += 1
    b = img[start*512:s*512]
    res += struct.pack('<IH', start, len(b)) + b
open(out, 'wb').write(res)
EOF
  }
  for v in 5 4; do
    : >"$tmp/v" && truncate -s 32M "$tmp/v"
    crc=$([ $v = 5 ] && echo 1 || echo 0)
    TEST_DIR=1 TEST_DEV=1 QA_CHECK_FS=1 mkfs.xfs -q -f -m crc=$crc -b size=1024 "$tmp/v"
    fsseed xfs-v$v 0 32
  done
  : >"$tmp/v" && truncate -s 120M "$tmp/v"
  mkfs.btrfs -q -f "$tmp/v" >/dev/null 2>&1
  fsseed btrfs 1 120
fi
# Registry hives: made by the hivex crate's tests (the test kit's minimal hive, filled
# by hivexregedit), which write them here when asked.
SNF_FUZZ_SEEDS="$c/hive" cargo test --quiet --manifest-path "$root/Cargo.toml" \
  -p hivex --test hive fuzz_seeds >/dev/null
# UFS images (fuzz_targets/ufs.rs: [flags u8][image KiB u16] then [sector u16][length
# u16][bytes] records of every non-zero sector run) made by makefs, UFS1 and UFS2, from a
# tree with hard and symbolic links (short and long), a directory of 20 entries, an
# empty directory and a file of zeros reaching an indirect block; flag 1 = edit.
if command -v makefs >/dev/null; then
  u=$tmp/ufs-tree
  mkdir -p "$u/etc" "$u/d" "$u/e"
  echo hi >"$u/etc/motd"
  ln "$u/etc/motd" "$u/etc/hard"
  ln -s motd "$u/etc/s"
  ln -s "$(printf 'y%.0s' $(seq 90))" "$u/etc/l"
  head -c 60000 /dev/zero >"$u/zeros"
  for i in $(seq 20); do echo "$i" >"$u/d/f$i"; done
  for v in 1 2; do
    makefs -t ffs -s 1m -o "version=$v,bsize=4096,fsize=512" "$tmp/u$v.img" "$u" >/dev/null
    for flags in 0 1; do
      python3 - "$tmp/u$v.img" "$flags" "$c/ufs/ufs$v-flags$flags" <<'EOF'
import struct, sys
img = open(sys.argv[1], 'rb').read()
out = bytearray(struct.pack('<BH', int(sys.argv[2]), len(img) // 1024))
sectors = [img[i:i + 512] for i in range(0, len(img), 512)]
i = 0
while i < len(sectors):
    if not any(sectors[i]):
        i += 1
        continue
    j = i
    while j < len(sectors) and any(sectors[j]) and (j - i) < 120:
        j += 1
    out += struct.pack('<HH', i, (j - i) * 512) + b''.join(sectors[i:j])
    i = j
open(sys.argv[3], 'wb').write(out)
EOF
    done
  done
else
  echo "make-corpus: makefs is missing; no UFS seeds" >&2
fi

du -sh "$c"
