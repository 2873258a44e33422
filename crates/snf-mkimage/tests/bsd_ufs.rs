//! FreeBSD, NetBSD and OpenBSD guests on real UFS (made by `makefs -t ffs`) run whole
//! through the binary: the metadata, and the output read back by readers independent of
//! the UFS backend that wrote it — the Linux kernel's UFS driver in one libguestfs
//! appliance (read-only) and testkit's fsck-like recount.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use snf_testkit::bsdlabel::{bsd_mbr_disk, fdisk_bsd_label, label_offset, set_duid, BsdSlice};
use snf_testkit::fixture::{
    copy_into, pseudo_random, run as run_tool, sparse_file, write_at, write_file,
};
use snf_testkit::ufs::{self, Layout};

const MIB: u64 = 1 << 20;
const SECTOR: u64 = 512;
/// Where the BSD MBR partition starts, in sectors, and its length.
const PART_START: u64 = 2048;
const PART_SECTORS: u64 = 56 * 2048;
/// The root filesystems' size.
const ROOT_MIB: u64 = 40;
/// A file in /tmp that cleanup-tmp deletes: its blocks become free and must not be
/// written to the output.
const BIG_TMP: usize = 8 << 20;
/// What the --host-run script copies into the guest: past UFS2's direct blocks.
const BLOB: usize = 3 << 20;
const SHA512: &str = "$6$rounds=5000$saltsalt$7ZLwE1hD0MdxmO7dUpDsQp8fGKBp6lEk5d3bMG1qPg9";
const BCRYPT: &str = "$2b$10$rL8bH1rNf4nZCjVnS0GkIeGmI3o6jD5Cw2wTq3wJ8uG4y2y9QxVxS";
const NETBSD_SHA1: &str = "$sha1$23423$abcdefgh$0123456789abcdefghijklmnopqr";

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("bsd-ufs.")
        .tempdir_in(snf_testkit::target_dir())
        .unwrap()
}

/// A stock `master.passwd`: comments, a blank line, locked system accounts and two
/// accounts with a password.
fn master_passwd(root_hash: &str, user_hash: &str) -> String {
    format!(
        "# $FreeBSD$\n#\n\
         root:{root_hash}:0:0::0:0:Charlie &:/root:/bin/sh\n\
         toor:*:0:0::0:0:Bourne-again Superuser:/root:\n\
         daemon:*:1:1::0:0:Owner of many system processes:/root:/usr/sbin/nologin\n\
         \n\
         user:{user_hash}:1001:1001::0:0:User:/home/user:/bin/sh\n"
    )
}

/// What every BSD tree has that the syspreps clean.
fn dirt(root: &Path, hash: &str) {
    write_file(root, "/etc/master.passwd", master_passwd(hash, hash));
    write_file(root, "/etc/pwd.db", "pwd.db");
    write_file(root, "/etc/spwd.db", "SECRET-SPWD-DB");
    write_file(root, "/var/log/messages", "old log\n");
    write_file(root, "/var/log/auth.log", "sshd: accepted\n");
    write_file(root, "/tmp/scratch", "left behind\n");
    write_file(root, "/tmp/sub/dir/file", "deep\n");
    write_file(root, "/tmp/big", pseudo_random(BIG_TMP, 11));
    // A directory spanning several 512-byte chunks, a symlink, a fifo, a hard link to
    // a file that stays, and /var/tmp.
    for i in 0..80 {
        write_file(
            root,
            &format!("/tmp/many/a-longish-temporary-name-{i:03}"),
            "t",
        );
    }
    std::os::unix::fs::symlink("/etc/pwd.db", root.join("tmp/link")).unwrap();
    run_tool(Command::new("mkfifo").arg(root.join("tmp/fifo")));
    fs::hard_link(root.join("etc/pwd.db"), root.join("tmp/pwd.hard")).unwrap();
    write_file(root, "/var/tmp/.hidden", "vi recovery\n");
    write_file(root, "/var/log/nested/messages.0", "rotated\n");
    write_file(
        root,
        "/root/.ssh/authorized_keys",
        "ssh-ed25519 AAAA root@host\n",
    );
    write_file(root, "/root/.history", "passwd\n");
    write_file(root, "/home/user/.profile", "PATH=/bin\n");
}

fn freebsd_tree(root: &Path, fstab: &str) {
    write_file(
        root,
        "/bin/freebsd-version",
        "#!/bin/sh\nset -e\n\nUSERLAND_VERSION=\"14.1-RELEASE\"\n\n: ${ROOT:=}\nLOADER_DIR=$ROOT/boot\n",
    );
    fs::set_permissions(
        root.join("bin/freebsd-version"),
        fs::Permissions::from_mode(0o555),
    )
    .unwrap();
    write_file(root, "/etc/fstab", fstab);
    write_file(
        root,
        "/etc/rc.conf",
        "hostname=\"freebsd\"\nifconfig_vtnet0=\"DHCP\"\nsshd_enable=\"YES\"\n",
    );
    write_file(root, "/boot/kernel/kernel", "ELF");
    dirt(root, SHA512);
}

/// A BSD root with `files` (guest path, content), a `/bin` and the [`dirt`] of `hash`.
fn bsd_tree(root: &Path, files: &[(&str, &str)], hash: &str) {
    for (path, content) in files {
        write_file(root, path, content);
    }
    fs::create_dir_all(root.join("bin")).unwrap();
    dirt(root, hash);
}

fn netbsd_tree(root: &Path) {
    bsd_tree(
        root,
        &[
            ("/netbsd", "ELF"),
            (
                "/etc/release",
                "NetBSD 10.0 (GENERIC) #0: Thu Mar 28 08:33:33 UTC 2024\n",
            ),
            (
                "/etc/fstab",
                "/dev/wd0a / ffs rw,log 1 1\n/dev/wd0b none swap sw,dp 0 0\n",
            ),
            ("/etc/rc.conf", "rc_configured=YES\nsshd=YES\n"),
        ],
        NETBSD_SHA1,
    );
}

fn openbsd_tree(root: &Path) {
    bsd_tree(
        root,
        &[
            ("/bsd", "ELF"),
            (
                "/etc/motd",
                "OpenBSD 7.5 (GENERIC.MP) #82: Wed Mar 20 15:48:40 MDT 2024\n",
            ),
            (
                "/etc/fstab",
                "3eb7f9da875cb9ee.a / ffs rw,wxallowed 1 1\n3eb7f9da875cb9ee.b none swap sw\n",
            ),
            ("/etc/myname", "openbsd.example.org\n"),
        ],
        BCRYPT,
    );
}

/// A guest disk and where its root filesystem is.
struct Guest {
    img: PathBuf,
    /// Byte offset of the root UFS in the disk.
    root_at: u64,
    /// The root's device in the appliance, and Linux's `ufstype`.
    dev: &'static str,
    ufstype: &'static str,
}

/// A guest, its name and the metadata the binary must print for it.
type Case<'a> = (&'a Guest, &'static str, Vec<(&'static str, &'static str)>);

/// A UFS image of `tree` for a root, `layout` as the BSD's own newfs puts it.
fn ufs_root(dir: &Path, tree: &Path, layout: Layout) -> PathBuf {
    let fsimg = dir.join("root.ufs");
    ufs::make_image(&fsimg, tree, layout, ROOT_MIB);
    ufs::check(&fsimg, 0).expect("makefs made a consistent filesystem");
    fsimg
}

/// FreeBSD as its installer lays it out on GPT: freebsd-boot at LBA 40, the UFS2 root
/// and swap, named for `/dev/gpt/LABEL`.
fn freebsd_disk(dir: &Path, tree: &Path, clean: bool) -> Guest {
    let fsimg = ufs_root(dir, tree, Layout::Ufs2FreeBsd);
    if !clean {
        // fs_clean, byte 209 of the superblock (at 64 KiB), as a crash leaves it.
        write_at(&fsimg, 65536 + 209, &[0]);
    }
    // FreeBSD 12+ newfs turns the metadata check-hashes on.
    ufs::enable_check_hashes(&fsimg);
    let img = dir.join("freebsd.raw");
    sparse_file(&img, (2 + ROOT_MIB + 8) * MIB);
    run_tool(
        Command::new("sgdisk")
            .args(["-a", "8"])
            .args(["-n", "1:40:+512K", "-t", "1:a501", "-c", "1:gptboot0"])
            .args([
                "-n",
                &format!("2:2048:+{ROOT_MIB}M"),
                "-t",
                "2:a503",
                "-c",
                "2:rootfs",
            ])
            .args(["-n", "3:0:+8M", "-t", "3:a502", "-c", "3:swapfs"])
            .arg(&img),
    );
    let types = run_tool(
        Command::new("sfdisk")
            .args(["--part-type"])
            .arg(&img)
            .arg("2"),
    );
    assert_eq!(types.trim(), "516E7CB6-6ECF-11D6-8FF8-00022D09712B");
    copy_into(&fsimg, &img, MIB);
    fs::remove_file(fsimg).unwrap();
    Guest {
        img,
        root_at: MIB,
        dev: "/dev/sda2",
        ufstype: "ufs2",
    }
}

/// An MBR disk whose partition of `mbr_type` holds a disklabel: slice `a` the UFS root
/// at `a_start`, slice `b` swap after it.
fn mbr_bsd_disk(dir: &Path, name: &str, mbr_type: &str, a_start: u64, fsimg: &Path) -> PathBuf {
    let img = dir.join(name);
    bsd_mbr_disk(&img, PART_START, PART_SECTORS, mbr_type);
    copy_into(fsimg, &img, a_start * SECTOR);
    let a = BsdSlice::mib('a', a_start, ROOT_MIB, 7);
    let b = BsdSlice::mib('b', a_start + ROOT_MIB * 2048, 8, 1);
    fdisk_bsd_label(&img, &[a, b]);
    fs::remove_file(fsimg).unwrap();
    img
}

/// `snf-mkimage ARGS`, its metadata from `--print-metadata --json`.
fn mkimage(args: &[&str]) -> (std::process::Output, serde_json::Value) {
    let out = Command::new(bin())
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("cannot run snf-mkimage");
    let json = serde_json::from_str(&stdout(&out)).unwrap_or(serde_json::Value::Null);
    (out, json)
}

fn assert_meta(json: &serde_json::Value, want: &[(&str, &str)]) {
    let meta = json.get("metadata").unwrap_or(json);
    let got: Vec<(String, String)> = meta
        .as_object()
        .unwrap_or_else(|| panic!("no metadata object: {json}"))
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect();
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(got, want);
}

/// Bytes of `path` allocated on the host filesystem.
fn allocated(path: &Path) -> u64 {
    fs::metadata(path).unwrap().blocks() * 512
}

/// A whole file of the guest read by Linux's UFS driver.
fn linux_read(h: &mut libguestfs::Handle, path: &str) -> Option<Vec<u8>> {
    let p = Path::new(path);
    h.lstat(p).ok()?;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = h.pread(p, got.len() as u64, &mut buf).unwrap();
        if n == 0 {
            return Some(got);
        }
        got.extend_from_slice(&buf[..n]);
    }
}

fn linux_names(h: &mut libguestfs::Handle, dir: &str) -> Vec<String> {
    let mut names: Vec<String> = h
        .readdir(Path::new(dir))
        .unwrap()
        .into_iter()
        .map(|e| e.name.to_string_lossy().into_owned())
        .filter(|n| n != "." && n != "..")
        .collect();
    names.sort();
    names
}

/// What the syspreps must have left of a [`dirt`] tree, as Linux sees it mounted at /.
fn assert_cleaned(h: &mut libguestfs::Handle, hash: &str, what: &str) {
    let passwd = String::from_utf8(linux_read(h, "/etc/master.passwd").unwrap()).unwrap();
    assert_eq!(passwd, master_passwd("!", "!"), "{what}");
    assert!(!passwd.contains(hash), "{what}");
    assert_eq!(linux_read(h, "/etc/spwd.db"), None, "{what}");
    assert_eq!(
        linux_read(h, "/etc/pwd.db").as_deref(),
        Some(&b"pwd.db"[..]),
        "{what}"
    );
    let st = h.lstat(Path::new("/etc/pwd.db")).unwrap();
    assert_eq!(st.nlink, 1, "{what}: the hard link in /tmp is gone");
    assert_eq!(linux_names(h, "/var/tmp"), Vec::<String>::new(), "{what}");
    for log in [
        "/var/log/messages",
        "/var/log/auth.log",
        "/var/log/nested/messages.0",
    ] {
        assert_eq!(
            linux_read(h, log).as_deref(),
            Some(&b""[..]),
            "{what} {log}"
        );
    }
    assert_eq!(linux_names(h, "/tmp"), Vec::<String>::new(), "{what}");
    // As the original: the files of a sensitive directory go, the directory stays.
    assert_eq!(linux_names(h, "/root"), [".ssh"], "{what}");
    assert_eq!(linux_names(h, "/root/.ssh"), Vec::<String>::new(), "{what}");
    assert_eq!(
        linux_read(h, "/home/user/.profile").as_deref(),
        Some(&b"PATH=/bin\n"[..]),
        "{what}"
    );
}

/// A `--host-run` script editing the guest through FUSE on the UFS backend: an append,
/// a new file, a copy reaching indirect blocks, a directory tree, a symlink, a rename
/// and a mode change.
fn host_run_script(dir: &Path) -> PathBuf {
    let path = dir.join("edit.sh");
    let blob = dir.join("blob");
    fs::write(&blob, pseudo_random(BLOB, 5)).unwrap();
    fs::write(
        &path,
        format!(
            "#!/bin/sh\nset -e\necho 'ntpd_enable=\"YES\"' >> etc/rc.conf\n\
             printf 'edited' > etc/from-host-run\n\
             mkdir -p usr/local/etc/rc.d\n\
             cp {} usr/local/blob\n\
             ln -s ../../../etc/rc.conf usr/local/etc/rc.link\n\
             printf 'x' > usr/local/etc/rc.d/tmpname\n\
             mv usr/local/etc/rc.d/tmpname usr/local/etc/rc.d/final\n\
             chmod 0751 usr/local/etc/rc.d/final\n",
            blob.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn bsd_guests_on_ufs_are_cleaned_and_linux_reads_the_output() {
    let dir = scratch();
    let d = dir.path();

    // FreeBSD on GPT, with a --host-run script editing its rc.conf.
    let fd = d.join("freebsd");
    let tree = fd.join("tree");
    freebsd_tree(
        &tree,
        "# Device\tMountpoint\tFStype\tOptions\tDump\tPass#\n\
         /dev/gpt/rootfs\t/\tufs\trw\t1\t1\n/dev/ada0p3\tnone\tswap\tsw\t0\t0\n",
    );
    let freebsd = freebsd_disk(&fd, &tree, true);

    // NetBSD: MBR type a9, the label's slice a 63 sectors in, UFS2 where NetBSD's
    // newfs -O2 puts its superblock (64 KiB).
    let nd = d.join("netbsd");
    let tree = nd.join("tree");
    netbsd_tree(&tree);
    let fsimg = ufs_root(&nd, &tree, Layout::Ufs2FreeBsd);
    let netbsd = Guest {
        img: mbr_bsd_disk(&nd, "netbsd.raw", "a9", PART_START + 64, &fsimg),
        root_at: (PART_START + 64) * SECTOR,
        dev: "/dev/sdb5",
        ufstype: "ufs2",
    };

    // OpenBSD: MBR type a6, slice a at the partition's start, UFS1, fstab by DUID.
    let od = d.join("openbsd");
    let tree = od.join("tree");
    openbsd_tree(&tree);
    let fsimg = ufs_root(&od, &tree, Layout::Ufs1);
    let openbsd = Guest {
        img: mbr_bsd_disk(&od, "openbsd.raw", "a6", PART_START, &fsimg),
        root_at: PART_START * SECTOR,
        dev: "/dev/sdc5",
        ufstype: "44bsd",
    };
    set_duid(
        &openbsd.img,
        label_offset(PART_START),
        [0x3e, 0xb7, 0xf9, 0xda, 0x87, 0x5c, 0xb9, 0xee],
    );

    let script = host_run_script(d);
    let systmp = d.join("systmp");
    fs::create_dir(&systmp).unwrap();
    let cases: [Case; 3] = [
        (
            &freebsd,
            "freebsd",
            vec![
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
        ),
        (
            &netbsd,
            "netbsd",
            vec![
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
        ),
        (
            &openbsd,
            "openbsd",
            vec![
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
        ),
    ];
    let mut outputs = Vec::new();
    for (g, name, want) in &cases {
        let before = sha256(&g.img);
        let out = g.img.with_extension("out");
        let mut args = vec!["--print-metadata", "--print-syspreps", "--json"];
        if *name == "freebsd" {
            args.extend(["--host-run", script.to_str().unwrap()]);
        }
        args.extend(["-o", out.to_str().unwrap(), g.img.to_str().unwrap()]);
        let res = Command::new(bin())
            .args(&args)
            .env("TMPDIR", &systmp)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(res.status.success(), "{name}: {}", stderr(&res));
        let json: serde_json::Value = serde_json::from_str(&stdout(&res))
            .unwrap_or_else(|e| panic!("{name}: {e}: {}", stdout(&res)));
        assert_meta(&json, want);
        let syspreps = json["syspreps"].to_string();
        for op in [
            "cleanup-password",
            "cleanup-tmp",
            "cleanup-log",
            "cleanup-userdata",
        ] {
            assert!(
                syspreps.contains(&format!("\"name\":\"{op}\"")),
                "{name}: {op}: {syspreps}"
            );
        }
        for op in [
            "cleanup-passwords",
            "remove-persistent-net-rules",
            "fix-acpid",
        ] {
            assert!(
                !syspreps.contains(&format!("\"{op}\"")),
                "{name}: {op}: {syspreps}"
            );
        }
        assert_eq!(sha256(&g.img), before, "{name}: the source is untouched");

        // Consistent as fsck_ffs counts, and the deleted /tmp/big left as holes (less
        // what the host-run script added).
        let freed = BIG_TMP as u64 - if *name == "freebsd" { BLOB as u64 } else { 0 };
        let src_sum = ufs::check(&g.img, g.root_at).unwrap();
        let out_sum = ufs::check(&out, g.root_at).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            out_sum.frags_free * 512 >= src_sum.frags_free * 512 + freed,
            "{name}: {src_sum:?} -> {out_sum:?}"
        );
        assert!(
            allocated(&out) + freed <= allocated(&g.img),
            "{name}: {} of output allocated, {} of source",
            allocated(&out),
            allocated(&g.img)
        );
        // Nothing is shrunk: the last partition (swap, or the label's) cannot be, and
        // the run says why.
        let why = if *name == "freebsd" {
            "Unable to shrink partition 3: could not detect its file system"
        } else {
            "Unable to shrink partition 1: it holds a BSD disklabel, whose slices are not shrunk"
        };
        assert!(stderr(&res).contains(why), "{name}: {}", stderr(&res));
        assert_eq!(
            fs::metadata(&out).unwrap().len(),
            fs::metadata(&g.img).unwrap().len(),
            "{name}"
        );
        if *name == "freebsd" {
            // The partitions keep FreeBSD's types and names.
            for (n, ty, label) in [
                ("1", "83BD6B9D-7F41-11DC-BE0B-001560B84F0F", "gptboot0"),
                ("2", "516E7CB6-6ECF-11D6-8FF8-00022D09712B", "rootfs"),
                ("3", "516E7CB5-6ECF-11D6-8FF8-00022D09712B", "swapfs"),
            ] {
                let t = run_tool(Command::new("sfdisk").arg("--part-type").arg(&out).arg(n));
                assert_eq!(t.trim(), ty);
                let l = run_tool(Command::new("sfdisk").arg("--part-label").arg(&out).arg(n));
                assert_eq!(l.trim(), label);
            }
            // Every check-hash FreeBSD will verify matches what the run wrote.
            let fs = g.img.with_extension("root");
            run_tool(
                Command::new("dd")
                    .arg(format!("if={}", out.display()))
                    .arg(format!("of={}", fs.display()))
                    .args([
                        "bs=1M",
                        "skip=1",
                        &format!("count={ROOT_MIB}"),
                        "conv=sparse",
                        "status=none",
                    ]),
            );
            ufs::verify_check_hashes(&fs).unwrap_or_else(|e| panic!("{name}: {e}"));
            fs::remove_file(fs).unwrap();
        }
        outputs.push(out);
    }
    assert!(entries(&systmp).is_empty(), "{:?}", entries(&systmp));

    // One appliance reads all three outputs with Linux's UFS driver.
    let launch = |tcg: bool| -> libguestfs::Result<libguestfs::Handle> {
        let mut h = libguestfs::Handle::new()?;
        if tcg {
            h.set_backend_setting("force_tcg", "1")?;
        }
        for out in &outputs {
            h.add_drive_raw(out, true)?;
        }
        h.launch()?;
        Ok(h)
    };
    // KVM only where the tool itself would use it (a hung nested KVM never returns).
    let mut h = launch(!image_creator::guestfs::kvm::usable())
        .or_else(|_| launch(true))
        .unwrap();
    for (g, name, _) in &cases {
        h.mount_options(&format!("ro,ufstype={}", g.ufstype), g.dev, "/")
            .unwrap_or_else(|e| panic!("{name}: mount {}: {e}", g.dev));
        let hash = match *name {
            "freebsd" => SHA512,
            "netbsd" => NETBSD_SHA1,
            _ => BCRYPT,
        };
        assert_cleaned(&mut h, hash, name);
        if *name == "freebsd" {
            let rc = linux_read(&mut h, "/etc/rc.conf").unwrap();
            assert_eq!(
                String::from_utf8(rc).unwrap(),
                "hostname=\"freebsd\"\nifconfig_vtnet0=\"DHCP\"\nsshd_enable=\"YES\"\nntpd_enable=\"YES\"\n"
            );
            assert!(
                linux_read(&mut h, "/usr/local/blob") == Some(pseudo_random(BLOB, 5)),
                "the copied blob"
            );
            assert_eq!(
                h.readlink(Path::new("/usr/local/etc/rc.link")).unwrap(),
                "../../../etc/rc.conf"
            );
            assert_eq!(linux_names(&mut h, "/usr/local/etc/rc.d"), ["final"]);
            let st = h.lstat(Path::new("/usr/local/etc/rc.d/final")).unwrap();
            assert_eq!(st.mode & 0o7777, 0o751);
            assert_eq!(
                linux_read(&mut h, "/etc/from-host-run").as_deref(),
                Some(&b"edited"[..])
            );
            assert_eq!(
                linux_read(&mut h, "/boot/kernel/kernel").as_deref(),
                Some(&b"ELF"[..])
            );
        }
        h.umount("/").unwrap();
    }
    h.shutdown().unwrap();
}

/// FreeBSD on an MBR slice is refused with the original's message, before any work.
#[test]
fn freebsd_on_mbr_is_refused_with_the_original_message() {
    let dir = scratch();
    let d = dir.path();
    let tree = d.join("tree");
    freebsd_tree(
        &tree,
        "/dev/ada0s1a / ufs rw 1 1\n/dev/ada0s1b none swap sw 0 0\n",
    );
    let fsimg = ufs_root(d, &tree, Layout::Ufs2FreeBsd);
    let img = mbr_bsd_disk(d, "freebsd-mbr.raw", "a5", PART_START + 16, &fsimg);
    let out = d.join("out.raw");
    let (res, _) = mkimage(&["-o", out.to_str().unwrap(), img.to_str().unwrap()]);
    assert_eq!(res.status.code(), Some(1), "{}", stderr(&res));
    let err = stderr(&res);
    assert!(
        err.contains("On FreeBSD only GUID partition tables are supported"),
        "{err}"
    );
    assert!(!out.exists());
}

/// A UFS root not cleanly unmounted is not written: the run stops with a message telling
/// to run fsck in the guest, and the source is untouched.
#[test]
fn an_unclean_ufs_root_is_not_written() {
    let dir = scratch();
    let d = dir.path();
    let tree = d.join("tree");
    // The root named by its device node, as older FreeBSD installers wrote it.
    freebsd_tree(
        &tree,
        "/dev/ada0p2 / ufs rw 1 1\n/dev/ada0p3 none swap sw 0 0\n",
    );
    let g = freebsd_disk(d, &tree, false);
    let before = sha256(&g.img);
    let out = d.join("out.raw");
    let (res, _) = mkimage(&["-o", out.to_str().unwrap(), g.img.to_str().unwrap()]);
    let err = stderr(&res);
    assert_eq!(res.status.code(), Some(1), "{err}");
    assert!(err.contains("run fsck_ffs in the guest"), "{err}");
    let line = err
        .lines()
        .find(|l| l.contains("fsck_ffs"))
        .unwrap()
        .to_string();
    assert!(line.contains("not cleanly unmounted"), "{line}");
    assert!(!out.exists());
    assert_eq!(sha256(&g.img), before);

    // Reading it is fine: the metadata is still printed.
    let (res, json) = mkimage(&["--print-metadata", "--json", g.img.to_str().unwrap()]);
    assert!(res.status.success(), "{}", stderr(&res));
    assert_eq!(json["OSFAMILY"], "freebsd", "{json}");
    assert_eq!(json["ROOT_PARTITION"], "2", "{json}");
    assert_eq!(sha256(&g.img), before);
}
