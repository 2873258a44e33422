//! FreeBSD, NetBSD and OpenBSD guests: FreeBSD on GPT, NetBSD and OpenBSD on MBR with
//! a BSD disklabel written by util-linux fdisk, every metadata key asserted. The guest
//! trees are UFS filesystems made by `makefs -t ffs` (UFS2 with the superblock at
//! 64 KiB for FreeBSD, UFS2 as makefs itself leaves it for NetBSD, UFS1 for OpenBSD);
//! what a run writes is checked by testkit's fsck-like recount (the Linux kernel reads
//! it back in snf-mkimage's `bsd_ufs` test).

mod common;

use std::path::{Path, PathBuf};

use common::*;
use image_creator::core::report::quiet;
use image_creator::inspect::Inspection;
use image_creator::options::RunOptions;
use image_creator::session::{Session, SessionError, Stage};
use snf_guestfs::{GuestFs, UfsFs};
use snf_testkit::bsdlabel::{bsd_mbr_disk, fdisk_bsd_label, label_offset, set_duid, BsdSlice};
use snf_testkit::fixture::{mkswap_at, MIB};
use snf_testkit::ufs::{self, Layout};

const SECTOR: u64 = 512;
/// Where the BSD MBR partition starts, in sectors, and its length.
const PART_START: u64 = 2048;
const PART_SECTORS: u64 = 120 * 2048;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// The accounts of a stock BSD `master.passwd`, a user with a SHA-512 hash, and a
/// locked one.
fn master_passwd(root_hash: &str, user_hash: &str) -> String {
    format!(
        "# $FreeBSD$\n#\n\
         root:{root_hash}:0:0::0:0:Charlie &:/root:/bin/sh\n\
         toor:*:0:0::0:0:Bourne-again Superuser:/root:\n\
         daemon:*:1:1::0:0:Owner of many system processes:/root:/usr/sbin/nologin\n\
         operator:*:2:5::0:0:System &:/:/usr/sbin/nologin\n\
         bin:*:3:7::0:0:Binaries Commands and Source:/:/usr/sbin/nologin\n\
         \n\
         user:{user_hash}:1001:1001::0:0:User:/home/user:/bin/sh\n\
         gone:*LOCKED*$6$x$y:1002:1002::0:0:Gone:/home/gone:/bin/sh\n"
    )
}

const SHA512: &str = "$6$rounds=5000$saltsalt$7ZLwE1hD0MdxmO7dUpDsQp8fGKBp6lEk5d3bMG1qPg9";
/// NetBSD's libc has no SHA-512 crypt: its installer writes `$sha1$` hashes.
const NETBSD_SHA1: &str = "$sha1$23423$abcdefgh$0123456789abcdefghijklmnopqr";
const BCRYPT: &str = "$2b$10$rL8bH1rNf4nZCjVnS0GkIeGmI3o6jD5Cw2wTq3wJ8uG4y2y9QxVxS";

fn freebsd_tree(t: &Tree, fstab: &str) {
    t.file("/etc/fstab", fstab)
        .file(
            "/bin/freebsd-version",
            "#!/bin/sh\n#\n# Copyright (c) 2013 Dag-Erling Smørgrav\n\
             set -e\n\nUSERLAND_VERSION=\"14.1-RELEASE\"\n\n: ${ROOT:=}\nLOADER_DIR=$ROOT/boot\n",
        )
        .mode("/bin/freebsd-version", 0o555)
        .file("/etc/freebsd-update.conf", "KeyPrint 800651ef4b4c71c27e60786d7b487188970f4b4169cc055784e21eb71d410cc5\nServerName update.FreeBSD.org\n")
        .file("/etc/passwd", "root:*:0:0:Charlie &:/root:/bin/sh\nuser:*:1001:1001:User:/home/user:/bin/sh\n")
        .file("/etc/rc.conf", "hostname=\"freebsd\"\nifconfig_vtnet0=\"DHCP\"\nsshd_enable=\"YES\"\n")
        .file("/boot/kernel/kernel", "ELF");
    accounts_and_dirs(t, SHA512);
}

/// What every BSD tree has: `master.passwd` (mode 0600, every password `hash`), the
/// password databases, and the home, tmp and log directories.
fn accounts_and_dirs(t: &Tree, hash: &str) {
    t.file("/etc/master.passwd", &master_passwd(hash, hash))
        .mode("/etc/master.passwd", 0o600)
        .file("/etc/spwd.db", "SECRET-SPWD-DB")
        .file("/etc/pwd.db", "pwd.db")
        .dir("/home/user")
        .dir("/tmp")
        .dir("/var/log");
}

fn netbsd_tree(t: &Tree, fstab: &str) {
    t.file("/etc/fstab", fstab)
        .file("/netbsd", "ELF")
        .file(
            "/etc/release",
            "NetBSD 10.0 (GENERIC) #0: Thu Mar 28 08:33:33 UTC 2024\n\n\
             \tmkrepro@mkrepro.NetBSD.org:/usr/src/sys/arch/amd64/compile/GENERIC\n\n\
             Build settings:\n\n  BUILD_DATE=2024-03-28\n",
        )
        .file("/etc/defaults/rc.conf", "sshd=NO\nhostname=\"\"\n")
        .file("/etc/rc.conf", "if [ -r /etc/defaults/rc.conf ]; then\n\t. /etc/defaults/rc.conf\nfi\nrc_configured=YES\nsshd=YES\n")
        .dir("/bin");
    accounts_and_dirs(t, NETBSD_SHA1);
}

fn openbsd_tree(t: &Tree, fstab: &str) {
    t.file("/etc/fstab", fstab)
        .file("/bsd", "ELF")
        .file("/bsd.rd", "ELF")
        .file(
            "/etc/motd",
            "OpenBSD 7.5 (GENERIC.MP) #82: Wed Mar 20 15:48:40 MDT 2024\n\n\
             Welcome to OpenBSD: The proactively secure Unix-like operating system.\n",
        )
        .file("/etc/installurl", "https://cdn.openbsd.org/pub/OpenBSD\n")
        .file(
            "/etc/signify/openbsd-75-base.pub",
            "untrusted comment: openbsd 7.5 base public key\nRWRGj1pRpprAfgN1\n",
        )
        .file("/etc/myname", "openbsd.example.org\n")
        .file("/etc/rc.conf.local", "pkg_scripts=\n")
        .dir("/bin");
    accounts_and_dirs(t, BCRYPT);
}

/// What one disklabel slice of a test disk holds.
enum SliceContent<'a> {
    Ufs(&'a Tree, Layout),
    /// UFS2 with newfs's default 32 KiB blocks and 4 KiB fragments.
    UfsLargeBlocks(&'a Tree),
    Swap,
}

/// An MBR disk whose one partition (type `mbr_type`, sectors [`PART_START`],
/// [`PART_SECTORS`] long) holds a disklabel with `slices`: filesystems made first,
/// the label written over them by fdisk.
fn bsd_disk(dir: &Path, mbr_type: &str, slices: &[(BsdSlice, SliceContent<'_>)]) -> PathBuf {
    let img = dir.join("disk.img");
    bsd_mbr_disk(&img, PART_START, PART_SECTORS, mbr_type);
    for (s, content) in slices {
        let (off, size) = (s.start * SECTOR, s.sectors * SECTOR);
        match content {
            SliceContent::Ufs(tree, layout) => {
                let f = dir.join("slice.ufs");
                ufs::make_image(&f, &tree.root, *layout, size / MIB);
                snf_testkit::fixture::copy_into(&f, &img, off);
                std::fs::remove_file(f).unwrap();
            }
            SliceContent::UfsLargeBlocks(tree) => {
                let f = dir.join("slice.ufs");
                snf_testkit::fixture::run(
                    std::process::Command::new("makefs")
                        .args(["-t", "ffs", "-s", &format!("{size}"), "-o"])
                        .arg("version=2,bsize=32768,fsize=4096")
                        .arg(&f)
                        .arg(&tree.root),
                );
                snf_testkit::fixture::copy_into(&f, &img, off);
                std::fs::remove_file(f).unwrap();
            }
            SliceContent::Swap => mkswap_at(&img, off, size, None),
        }
    }
    let label: Vec<BsdSlice> = slices.iter().map(|(s, _)| *s).collect();
    fdisk_bsd_label(&img, &label);
    for (s, content) in slices {
        if let SliceContent::Ufs(..) | SliceContent::UfsLargeBlocks(_) = content {
            ufs::check(&img, s.start * SECTOR).expect("a slice's UFS under the label");
        }
    }
    img
}

/// The mountpoints inspection found, with the partition of each.
fn mounts_by_partition(i: &Inspection) -> Vec<(String, u32)> {
    i.mounts
        .iter()
        .map(|m| (m.mountpoint.display().to_string(), m.partition))
        .collect()
}

/// NetBSD's installer layout in an a9 partition, slice a 64 sectors in: `a` the UFS2
/// root (40 MiB), `b` swap (8 MiB), `e` the UFS2 `home` (16 MiB). Returns the disk and
/// slice `e`.
fn netbsd_disk(dir: &Path, root: &Tree, home: &Tree) -> (PathBuf, BsdSlice) {
    let e = BsdSlice::mib('e', PART_START + 64 + 48 * 2048, 16, 7);
    let img = bsd_disk(
        dir,
        "a9",
        &[
            (
                BsdSlice::mib('a', PART_START + 64, 40, 7),
                SliceContent::Ufs(root, Layout::Ufs2NetBsd),
            ),
            (
                BsdSlice::mib('b', PART_START + 64 + 40 * 2048, 8, 1),
                SliceContent::Swap,
            ),
            (e, SliceContent::Ufs(home, Layout::Ufs2NetBsd)),
        ],
    );
    (img, e)
}

#[test]
fn freebsd_on_gpt_every_key_and_its_fstab_names() {
    let d = tmp();
    let root = Tree::new(d.path(), "root");
    let home = Tree::new(d.path(), "home");
    home.file("/user/.profile", "PATH=/bin\n");
    let var = Tree::new(d.path(), "var");
    var.dir("/log");
    let local = Tree::new(d.path(), "local");
    local.dir("/etc");
    let srv = Tree::new(d.path(), "srv");
    srv.dir("/www");
    freebsd_tree(
        &root,
        &format!(
            "# Device\tMountpoint\tFStype\tOptions\tDump\tPass#\n\
             /dev/gpt/rootfs\t/\tufs\trw\t1\t1\n\
             /dev/ada0p3\tnone\tswap\tsw\t0\t0\n\
             /dev/gptid/{}\t/home\tufs\trw\t2\t2\n\
             /dev/label/var\t/var\tufs\trw\t2\t2\n\
             /dev/ufs/usrlocal\t/usr/local\tufs\trw\t2\t2\n\
             /dev/ufsid/5f1e0a3b00c0ffee\t/srv\tufs\trw\t2\t2\n\
             fdesc\t/dev/fd\tfdescfs\trw\t0\t0\n\
             proc\t/proc\tprocfs\trw\t0\t0\n",
            part_guid(4).to_ascii_lowercase()
        ),
    );
    root.dir("/usr/local").dir("/srv");
    let img = make_disk(
        d.path(),
        true,
        &[
            Part {
                size_mib: 1,
                name: "gptboot0",
                content: Content::FreebsdBoot,
            },
            Part {
                size_mib: 24,
                name: "rootfs",
                content: Content::Ufs {
                    tree: &root,
                    layout: Layout::Ufs2FreeBsd,
                },
            },
            Part {
                size_mib: 4,
                name: "swapfs",
                content: Content::FreebsdSwap,
            },
            Part {
                size_mib: 8,
                name: "home",
                content: Content::Ufs {
                    tree: &home,
                    layout: Layout::Ufs2FreeBsd,
                },
            },
            Part {
                size_mib: 8,
                name: "var",
                content: Content::Ufs {
                    tree: &var,
                    layout: Layout::Ufs2FreeBsd,
                },
            },
            Part {
                size_mib: 8,
                name: "local",
                content: Content::Ufs {
                    tree: &local,
                    layout: Layout::Ufs2FreeBsd,
                },
            },
            Part {
                size_mib: 8,
                name: "srv",
                content: Content::Ufs {
                    tree: &srv,
                    layout: Layout::Ufs2FreeBsd,
                },
            },
        ],
    );
    // `tunefs -L usrlocal` on partition 6 (fs_volname) and partition 7's fs_id, in
    // the superblocks at 64 KiB: FreeBSD's /dev/ufs/ and /dev/ufsid/ names.
    let (p6, p7) = (
        (1 + 1 + 24 + 4 + 8 + 8) * MIB,
        (1 + 1 + 24 + 4 + 8 + 8 + 8) * MIB,
    );
    snf_testkit::fixture::write_at(&img, p6 + 65536 + 680, b"usrlocal\0");
    let mut id = 0x5f1e_0a3bu32.to_le_bytes().to_vec();
    id.extend_from_slice(&0x00c0_ffeeu32.to_le_bytes());
    snf_testkit::fixture::write_at(&img, p7 + 65536 + 144, &id);
    // `glabel label var ada0p5` as FreeBSD writes it in the partition's last sector (no
    // Linux tool writes GEOM labels): magic, version 2, name, provider size.
    let (p5_start, p5_size) = ((1 + 1 + 24 + 4 + 8) * MIB, 8 * MIB);
    let mut md = Vec::new();
    md.extend_from_slice(b"GEOM::LABEL\0\0\0\0\0");
    md.extend_from_slice(&2u32.to_le_bytes());
    md.extend_from_slice(b"var\0\0\0\0\0\0\0\0\0\0\0\0\0");
    md.extend_from_slice(&p5_size.to_le_bytes());
    snf_testkit::fixture::write_at(&img, p5_start + p5_size - SECTOR, &md);
    let i = inspect_disk(&img);
    assert_eq!(i.unsupported, None);
    assert_meta(
        &i.metadata,
        &[
            ("BOOTSTRAP", "none"),
            ("DESCRIPTION", "FreeBSD 14.1-RELEASE"),
            ("GUI", "No GUI"),
            ("KERNEL", "FreeBSD 14.1"),
            ("OS", "freebsd"),
            ("OSFAMILY", "freebsd"),
            ("PARTITION_TABLE", "gpt"),
            ("PASSWD_HASHING_METHOD", "sha512"),
            (
                "REMOTE_CONNECTION",
                "ssh:port=22,user=root ssh:port=22,user=user",
            ),
            ("ROOT_PARTITION", "2"),
            ("SORTORDER", "6001401"),
            ("USERS", "root user"),
        ],
    );
    assert_eq!(
        mounts_by_partition(&i),
        vec![
            ("/".to_string(), 2),
            ("/var".to_string(), 5),
            ("/srv".to_string(), 7),
            ("/home".to_string(), 4),
            ("/usr/local".to_string(), 6),
        ]
    );
}

#[test]
fn freebsd_on_mbr_is_refused_with_the_original_message() {
    let d = tmp();
    let root = Tree::new(d.path(), "root");
    freebsd_tree(
        &root,
        "/dev/ada0s1a / ufs rw 1 1\n/dev/ada0s1b none swap sw 0 0\n",
    );
    let img = bsd_disk(
        d.path(),
        "a5",
        &[
            (
                BsdSlice::mib('a', PART_START + 16, 40, 7),
                SliceContent::Ufs(&root, Layout::Ufs2FreeBsd),
            ),
            (
                BsdSlice::mib('b', PART_START + 16 + 40 * 2048, 8, 1),
                SliceContent::Swap,
            ),
        ],
    );
    let i = inspect_disk(&img);
    let reason = "On FreeBSD only GUID partition tables are supported";
    assert_eq!(i.unsupported.as_deref(), Some(reason));
    assert!(i.guest.is_none());
    assert_eq!(i.metadata.get("UNSUPPORTED"), Some(reason));
    assert_eq!(i.metadata.get("OSFAMILY"), Some("freebsd"));
    assert_eq!(i.root_partition, Some(5));
}

#[test]
fn netbsd_on_an_mbr_disklabel_every_key() {
    let d = tmp();
    let root = Tree::new(d.path(), "root");
    let home = Tree::new(d.path(), "home");
    home.file("/user/.profile", "PATH=/bin\n");
    netbsd_tree(
        &root,
        "/dev/wd0a / ffs rw,log 1 1\n/dev/wd0b none swap sw,dp 0 0\n/dev/wd0e /home ffs rw,log 1 2\n\
         kernfs /kern kernfs rw\nptyfs /dev/pts ptyfs rw\nprocfs /proc procfs rw\n\
         /dev/cd0a /cdrom cd9660 ro,noauto\ntmpfs /var/shm tmpfs rw,-m1777,-sram%25\n",
    );
    let (img, _) = netbsd_disk(d.path(), &root, &home);
    let i = inspect_disk(&img);
    assert_eq!(i.unsupported, None);
    assert_meta(
        &i.metadata,
        &[
            ("BOOTSTRAP", "none"),
            ("DESCRIPTION", "NetBSD 10.0 (GENERIC)"),
            ("GUI", "No GUI"),
            ("KERNEL", "NetBSD 10.0"),
            ("OS", "netbsd"),
            ("OSFAMILY", "netbsd"),
            ("PARTITION_TABLE", "msdos"),
            ("PASSWD_HASHING_METHOD", "sha1"),
            (
                "REMOTE_CONNECTION",
                "ssh:port=22,user=root ssh:port=22,user=user",
            ),
            ("ROOT_PARTITION", "5"),
            ("SORTORDER", "5001000"),
            ("USERS", "root user"),
        ],
    );
    assert_eq!(
        mounts_by_partition(&i),
        vec![("/".to_string(), 5), ("/home".to_string(), 7)]
    );
    let names: Vec<String> = i.partitions.iter().map(|p| p.desc.name()).collect();
    assert_eq!(
        names,
        [
            "partition 1 slice a",
            "partition 1 slice b",
            "partition 1 slice e"
        ]
    );
}

#[test]
fn openbsd_with_duids_and_root_at_the_partition_start() {
    let d = tmp();
    let root = Tree::new(d.path(), "root");
    let home = Tree::new(d.path(), "home");
    home.file("/user/.profile", "PATH=/bin\n");
    openbsd_tree(
        &root,
        "3eb7f9da875cb9ee.a / ffs rw,wxallowed 1 1\n3eb7f9da875cb9ee.b none swap sw\n\
         3eb7f9da875cb9ee.e /home ffs rw,nodev,nosuid 1 2\n",
    );
    // The root slice starts where the MBR partition does, as OpenBSD's installer makes
    // it: the partition itself must not be taken for a second root.
    let img = bsd_disk(
        d.path(),
        "a6",
        &[
            (
                BsdSlice::mib('a', PART_START, 40, 7),
                SliceContent::Ufs(&root, Layout::Ufs1),
            ),
            (
                BsdSlice::mib('b', PART_START + 40 * 2048, 8, 1),
                SliceContent::Swap,
            ),
            (
                BsdSlice::mib('e', PART_START + 48 * 2048, 16, 7),
                SliceContent::Ufs(&home, Layout::Ufs1),
            ),
        ],
    );
    set_duid(
        &img,
        label_offset(PART_START),
        [0x3e, 0xb7, 0xf9, 0xda, 0x87, 0x5c, 0xb9, 0xee],
    );
    let i = inspect_disk(&img);
    assert_eq!(i.unsupported, None);
    assert_meta(
        &i.metadata,
        &[
            ("BOOTSTRAP", "none"),
            ("DESCRIPTION", "OpenBSD 7.5 (GENERIC.MP)"),
            ("GUI", "No GUI"),
            ("KERNEL", "OpenBSD 7.5"),
            ("OS", "openbsd"),
            ("OSFAMILY", "openbsd"),
            ("PARTITION_TABLE", "msdos"),
            ("PASSWD_HASHING_METHOD", "blowfish"),
            (
                "REMOTE_CONNECTION",
                "ssh:port=22,user=root ssh:port=22,user=user",
            ),
            ("ROOT_PARTITION", "5"),
            ("SORTORDER", "4000705"),
            ("USERS", "root user"),
        ],
    );
    let mounts: Vec<(String, Option<String>)> = i
        .mounts
        .iter()
        .map(|m| (m.mountpoint.display().to_string(), m.fstab_spec.clone()))
        .collect();
    assert_eq!(
        mounts,
        vec![
            ("/".to_string(), None),
            ("/home".to_string(), Some("3eb7f9da875cb9ee.e".to_string()))
        ]
    );
}

/// Options for a run on `img` writing `dir/out.raw` (returned), `dir` its tmpdir.
fn run_options(dir: &Path, img: &Path) -> (PathBuf, RunOptions) {
    let out = dir.join("out.raw");
    let mut opts = RunOptions::new(img);
    opts.tmpdir = Some(dir.to_path_buf());
    opts.outfile = Some(out.clone());
    (out, opts)
}

/// A whole run (up to the host run, then the rest) with [`run_options`]: the output
/// path and how the run ended, the session dropped.
fn run_whole(dir: &Path, img: &Path) -> (PathBuf, Result<(), SessionError>) {
    let (out, opts) = run_options(dir, img);
    let res = Session::new(opts, quiet()).and_then(|mut s| {
        s.run_until(Stage::HostRun)?;
        s.finish()
    });
    (out, res)
}

/// The file at `path` of the UFS at byte `offset` of `img` (`sectors` long), read
/// through the backend opened read-only; `None` when it does not exist.
fn ufs_cat(img: &Path, offset: u64, size: u64, path: &str) -> Option<String> {
    let fs = UfsFs::open(img, offset, size, false).expect("the output's UFS opens");
    let mut g = GuestFs::new(Box::new(fs), "ufs");
    let got = g.read(Path::new(path)).ok();
    g.close().unwrap();
    got.map(|b| String::from_utf8(b).unwrap())
}

/// Turn the one 4 KiB data block of the file at `path` (in the UFS2 at byte `offset`,
/// superblock at 8 KiB) into its extended-attribute area, as FreeBSD keeps an ACL: the
/// file becomes empty and its block moves from `di_db[0]` to `di_extb[0]`, so the
/// maps and counts stay as they were.
fn give_ext_area(img: &Path, offset: u64, size: u64, path: &str, extsize: u32) {
    use std::os::unix::fs::FileExt;
    let fs = UfsFs::open(img, offset, size, false).unwrap();
    let mut g = GuestFs::new(Box::new(fs), "ufs");
    let ino = g.lstat(Path::new(path)).unwrap().node;
    g.close().unwrap();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(img)
        .unwrap();
    let mut sb = vec![0u8; 1400];
    f.read_exact_at(&mut sb, offset + 8192).unwrap();
    let u32_at = |o: usize| u64::from(u32::from_le_bytes(sb[o..o + 4].try_into().unwrap()));
    assert_eq!(u32_at(1372), 0x1954_0119, "a UFS2 superblock at 8 KiB");
    let (bsize, fsize, frag) = (u32_at(48), u32_at(52), u32_at(56));
    let (iblkno, ipg, fpg) = (u32_at(16), u32_at(184), u32_at(188));
    let (c, i, inopb) = (ino / ipg, ino % ipg, bsize / 256);
    let pos = offset + (fpg * c + iblkno + i / inopb * frag) * fsize + i % inopb * 256;
    let mut d = vec![0u8; 256];
    f.read_exact_at(&mut d, pos).unwrap();
    let u64_at = |d: &[u8], o: usize| u64::from_le_bytes(d[o..o + 8].try_into().unwrap());
    assert_eq!(u64_at(&d, 16), 4096, "di_size");
    let block = u64_at(&d, 112);
    assert!(block != 0 && u64_at(&d, 120) == 0, "one data block");
    d[16..24].fill(0);
    d[112..120].fill(0);
    d[92..96].copy_from_slice(&extsize.to_le_bytes());
    d[96..104].copy_from_slice(&block.to_le_bytes());
    f.write_all_at(&d, pos).unwrap();
}

/// A whole run on a NetBSD disk: the BSD operations and not the Linux ones, the
/// passwords locked in master.passwd and spwd.db gone, checked in the written image; a
/// deleted file's extended-attribute block freed with it.
#[test]
fn netbsd_run_locks_the_passwords_and_removes_spwd_db() {
    let d = tmp();
    let root = Tree::new(d.path(), "root");
    netbsd_tree(
        &root,
        "/dev/wd0a / ffs rw,log 1 1\n/dev/wd0b none swap sw,dp 0 0\n",
    );
    root.file("/var/db/entropy-file", "SEED")
        .file("/tmp/scratch", "left behind")
        .file("/var/log/messages", "old log\n")
        .file("/tmp/with-acl", &"A".repeat(4096));
    // Slice a starts where the partition does: the partition's start reads as a
    // filesystem, which shrinking must not take for the partition's own.
    let a = BsdSlice::mib('a', PART_START, 40, 7);
    let b = BsdSlice::mib('b', PART_START + 40 * 2048, 8, 1);
    let img = bsd_disk(
        d.path(),
        "a9",
        &[
            (a, SliceContent::Ufs(&root, Layout::Ufs2NetBsd)),
            (b, SliceContent::Swap),
        ],
    );
    let off = a.start * SECTOR;
    give_ext_area(&img, off, a.sectors * SECTOR, "/tmp/with-acl", 4096);
    ufs::check(&img, off).expect("the extended attribute area is accounted for");
    let (out, opts) = run_options(d.path(), &img);
    let mut session = Session::new(opts, quiet()).unwrap();
    session.run_until(Stage::HostRun).unwrap();
    let enabled: Vec<&str> = session
        .syspreps()
        .expect("the guest is supported")
        .enabled()
        .iter()
        .map(|op| op.name)
        .collect();
    session.finish().unwrap();
    let ran: Vec<&str> = session.sysprep_reports().iter().map(|r| r.name).collect();
    assert!(ran.contains(&"cleanup-password"), "{ran:?}");
    for name in [
        "cleanup-password",
        "cleanup-tmp",
        "cleanup-log",
        "cleanup-userdata",
    ] {
        assert!(enabled.contains(&name), "{name} in {enabled:?}");
    }
    for name in [
        "cleanup-passwords",
        "remove-persistent-net-rules",
        "fix-acpid",
    ] {
        assert!(!enabled.contains(&name), "{name} in {enabled:?}");
    }
    assert_eq!(session.metadata().get("ROOT_PARTITION"), Some("5"));
    drop(session);

    // The partition holding the label is not cut at the end of slice a's filesystem.
    let (_, parts) = snf_testkit::partitions(&out).unwrap();
    assert_eq!((parts[0].start, parts[0].size), (PART_START, PART_SECTORS));
    let swap = std::process::Command::new("blkid")
        .args(["-p", "-o", "value", "-s", "TYPE", "-O"])
        .arg((b.start * SECTOR).to_string())
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&swap.stdout).trim(), "swap");

    ufs::check(&out, off).expect("the root slice after the run");
    let size = a.sectors * SECTOR;
    let cat = |path| ufs_cat(&out, off, size, path);
    let passwd = cat("/etc/master.passwd").expect("master.passwd kept");
    let want = master_passwd("!", "!").replace("gone:*LOCKED*$6$x$y:", "gone:!:");
    assert_eq!(passwd, want);
    assert_eq!(cat("/etc/spwd.db"), None);
    assert_eq!(cat("/etc/pwd.db").as_deref(), Some("pwd.db"));
    assert_eq!(cat("/tmp/scratch"), None);
    assert_eq!(cat("/var/db/entropy-file"), None);
}

/// A disklabel whose checksum does not match is not trusted: the partition is named
/// with the reason, and nothing in it is taken for the root.
#[test]
fn a_corrupt_disklabel_is_named_in_the_refusal() {
    let d = tmp();
    let root = Tree::new(d.path(), "root");
    openbsd_tree(&root, "/dev/sd0a / ffs rw 1 1\n");
    let img = bsd_disk(
        d.path(),
        "a6",
        &[(
            BsdSlice::mib('a', PART_START + 64, 40, 7),
            SliceContent::Ufs(&root, Layout::Ufs1),
        )],
    );
    // One byte of slice a's size: the checksum no longer matches.
    snf_testkit::fixture::write_at(&img, label_offset(PART_START) + 148, &[0x55]);
    let i = inspect_disk(&img);
    let reason = i.unsupported.expect("refused");
    assert!(
        reason.starts_with(
            "Unable to detect any operating system on the media: partition 1 (its BSD disklabel is invalid: checksum"
        ),
        "{reason}"
    );
    assert!(i.guest.is_none());
}

/// A UFS slice mounted in the guest but not cleanly unmounted (here /home) is not
/// written: the run stops with a one-line message naming it and telling to run fsck,
/// and the source is untouched.
#[test]
fn an_unclean_home_slice_stops_the_run() {
    let d = tmp();
    let root = Tree::new(d.path(), "root");
    let home = Tree::new(d.path(), "home");
    home.file("/user/.profile", "PATH=/bin\n")
        .file("/user/.history", "secret\n");
    netbsd_tree(
        &root,
        "/dev/wd0a / ffs rw,log 1 1\n/dev/wd0b none swap sw,dp 0 0\n/dev/wd0e /home ffs rw,log 1 2\n",
    );
    let (img, e) = netbsd_disk(d.path(), &root, &home);
    // fs_clean of the slice's superblock (makefs's UFS2 keeps it at 8 KiB).
    snf_testkit::fixture::write_at(&img, e.start * SECTOR + 8192 + 209, &[0]);
    let before = std::fs::read(&img).unwrap();
    let (out, res) = run_whole(d.path(), &img);
    let err = res
        .expect_err("an unclean slice is not written")
        .to_string();
    assert!(!err.contains('\n'), "{err}");
    assert!(
        err.contains("partition 1 slice e: the UFS filesystem was not cleanly unmounted: run fsck_ffs in the guest"),
        "{err}"
    );
    assert!(!out.exists());
    assert!(
        std::fs::read(&img).unwrap() == before,
        "the source is untouched"
    );
}

/// An extended-attribute size larger than the two blocks UFS2 has is garbage: deleting
/// the file stops the run with a typed one-line error, nothing is freed blindly.
#[test]
fn a_garbage_extended_attribute_size_is_a_typed_error() {
    let d = tmp();
    let root = Tree::new(d.path(), "root");
    netbsd_tree(&root, "/dev/wd0a / ffs rw 1 1\n");
    root.file("/tmp/with-acl", &"A".repeat(4096));
    let a = BsdSlice::mib('a', PART_START + 64, 40, 7);
    let img = bsd_disk(
        d.path(),
        "a9",
        &[(a, SliceContent::Ufs(&root, Layout::Ufs2NetBsd))],
    );
    let off = a.start * SECTOR;
    give_ext_area(&img, off, a.sectors * SECTOR, "/tmp/with-acl", 3 * 4096);
    let (out, res) = run_whole(d.path(), &img);
    let err = res.expect_err("garbage is refused").to_string();
    assert!(!err.contains('\n'), "{err}");
    assert!(
        err.contains("extended attribute size 12288 too large"),
        "{err}"
    );
    assert!(!out.exists());
}

/// newfs's default geometry (32 KiB blocks, 4 KiB fragments): a run deletes, truncates
/// and rewrites with it and the recount finds the filesystem consistent.
#[test]
fn netbsd_run_with_large_blocks() {
    let d = tmp();
    let root = Tree::new(d.path(), "root");
    netbsd_tree(&root, "/dev/wd0a / ffs rw 1 1\n");
    let big: String = (0..40_000).map(|i| format!("line {i}\n")).collect();
    root.file("/tmp/big", &big)
        .file("/tmp/small", "x")
        .file("/var/log/messages", &big)
        .file("/var/log/tiny", "t\n");
    let a = BsdSlice::mib('a', PART_START + 64, 40, 7);
    let img = bsd_disk(d.path(), "a9", &[(a, SliceContent::UfsLargeBlocks(&root))]);
    let (out, res) = run_whole(d.path(), &img);
    res.unwrap();
    let off = a.start * SECTOR;
    let sum = ufs::check(&out, off).expect("the root slice after the run");
    assert_eq!(sum.block_size, 32768);
    let cat = |path| ufs_cat(&out, off, a.sectors * SECTOR, path);
    let want = master_passwd("!", "!").replace("gone:*LOCKED*$6$x$y:", "gone:!:");
    assert_eq!(cat("/etc/master.passwd").as_deref(), Some(want.as_str()));
    assert_eq!(cat("/var/log/messages").as_deref(), Some(""));
    assert_eq!(cat("/var/log/tiny").as_deref(), Some(""));
    assert_eq!(cat("/tmp/big"), None);
    assert_eq!(cat("/tmp/small"), None);
}
