//! LVM guests end to end through the binary, on layouts made by the real LVM tools: a
//! root LV with `/var`, `/home` and swap LVs beside a plain `/boot`, a volume group over
//! two partitions with a volume split over both, a volume extended after another was
//! made (two pieces), and a thin root (refused by name). Every result is checked with
//! the LVM tools and e2fsprogs, not with the code that wrote it.

mod common;
#[path = "../../cloud/tests/support/synnefo.rs"]
mod synnefo;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use image_creator::disk::partition::{Layout, MIB};
use snf_testkit::fixture::{
    assert_e2fsck_clean, mkswap_at, run as run_tool, write_file, Disk, Mke2fs,
};
use snf_testkit::lvm::Lvm;

fn meta_of(out: &Path) -> serde_json::Value {
    let text = fs::read_to_string(format!("{}.meta", out.display())).unwrap();
    serde_json::from_str::<serde_json::Value>(&text).unwrap()["properties"].clone()
}

fn prop(meta: &serde_json::Value, key: &str) -> Option<String> {
    meta.get(key).and_then(|v| v.as_str()).map(str::to_string)
}

/// A Debian-like root for an LVM guest, with dirt the default operations remove.
fn lvm_root(tree: &Path, fstab: &str) {
    debian_root(tree, fstab);
    write_file(
        tree,
        "/etc/shadow",
        "root:$6$salt$hash:19000:0:99999:7:::\nuser:$6$salt$hash2:19000:0:99999:7:::\n",
    );
    write_file(
        tree,
        "/etc/machine-id",
        "5e1f0c2a9b8d4e7f8a6b3c2d1e0f9a8b\n",
    );
    write_file(tree, "/root/.bash_history", "secret-command-line\n");
    write_file(tree, "/data.bin", pseudo_random(3 << 20, 11));
    fs::create_dir_all(tree.join("var")).unwrap();
    fs::create_dir_all(tree.join("home")).unwrap();
    fs::create_dir_all(tree.join("boot")).unwrap();
    fs::create_dir_all(tree.join("tmp")).unwrap();
}

/// Write an ext4 filesystem made from `tree` (`size` bytes) into the pieces of a
/// logical volume: made in a file of its own, then copied piece by piece.
fn ext4_into_pieces(img: &Path, pieces: &[(u64, u64)], tree: Option<&Path>, label: &str) {
    let size: u64 = pieces.iter().map(|p| p.1).sum();
    let file = img.with_extension(format!("{label}.fs"));
    let mut mk = Mke2fs::ext4().label(label);
    if let Some(t) = tree {
        mk = mk.tree(t);
    }
    mk.make(&file, 0, &format!("{}k", size / 1024));
    let mut at = 0;
    for &(off, len) in pieces {
        dd(&file, at, img, off, len);
        at += len;
    }
    fs::remove_file(&file).unwrap();
}

/// Read a file of an ext filesystem with debugfs (independent of our code).
fn debugfs_cat(fs_file: &Path, path: &str) -> Option<String> {
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(format!("cat {path}"))
        .arg(fs_file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr);
    (!err.contains("File not found")).then_some(text)
}

/// Gather the pieces of an LV of `img` into a file of their own.
fn gather(img: &Path, pieces: &[(u64, u64)], to: &Path) {
    let _ = fs::remove_file(to);
    let mut at = 0;
    for &(off, len) in pieces {
        dd(img, off, to, at, len);
        at += len;
    }
}

/// Copy `len` bytes of `src` at `from` into `dst` at `to` with dd (64 KiB aligned).
fn dd(src: &Path, from: u64, dst: &Path, to: u64, len: u64) {
    run_tool(Command::new("dd").args([
        format!("if={}", src.display()),
        format!("of={}", dst.display()),
        "bs=64k".into(),
        format!("skip={}", from / 65536),
        format!("seek={}", to / 65536),
        format!("count={}", len / 65536),
        "conv=notrunc,sparse".into(),
        "status=none".into(),
    ]));
}

/// MBR: p1 /boot ext4 (24 MiB), p2 LVM PV (rest of 200 MiB) with VG `vg0`: `root`
/// (64 MiB ext4, the Debian root), `var` (16 MiB ext4), `home` (16 MiB ext4), `swap`
/// (8 MiB), leaving free extents at the end. fstab names each in another way.
fn server_layout(dir: &Path) -> PathBuf {
    let disk = Disk::create(
        dir.join("server.img"),
        200 * MIB,
        "label: dos\nstart=2048, size=24M, type=83, bootable\nstart=51200, type=8e\n",
    );
    let lvm = Lvm::attach(disk.path(), &[(disk.offset(2), disk.size(2))]);
    lvm.pvcreate(&[0], &[]);
    lvm.vgcreate("vg0", &[0], &[]);
    lvm.lvcreate("vg0", "root", "64M", &[]);
    lvm.lvcreate("vg0", "var", "16M", &[]);
    lvm.lvcreate("vg0", "home", "16M", &[]);
    lvm.lvcreate("vg0", "swap", "8M", &[]);
    let ranges: Vec<_> = ["root", "var", "home", "swap"]
        .iter()
        .map(|lv| lvm.lv_ranges("vg0", lv))
        .collect();
    drop(lvm);
    let tree = dir.join("server.tree");
    lvm_root(
        &tree,
        "/dev/mapper/vg0-root / ext4 errors=remount-ro 0 1\n\
         UUID=0b0b0b0b-1111-2222-3333-444444444444 /boot ext4 defaults 0 2\n\
         /dev/vg0/var /var ext4 defaults 0 2\n\
         /dev/disk/by-id/dm-name-vg0-home /home ext4 defaults 0 2\n\
         /dev/mapper/vg0-swap none swap sw 0 0\n",
    );
    let boot = dir.join("server.boot");
    write_file(&boot, "/vmlinuz-6.1.0", "kernel");
    disk.ext(
        1,
        &Mke2fs::ext4()
            .uuid("0b0b0b0b-1111-2222-3333-444444444444")
            .tree(&boot),
    );
    let var = dir.join("server.var");
    write_file(&var, "/log/syslog", "Jan 1 secret log line\n");
    write_file(&var, "/lib/dhcp/dhclient.leases", "lease { }\n");
    let home = dir.join("server.home");
    write_file(&home, "/user/.bash_history", "another secret\n");
    let img = disk.path().to_path_buf();
    for (i, t) in [(0, &tree), (1, &var), (2, &home)] {
        let [(off, len)] = ranges[i][..] else {
            panic!("LV {i} is not in one piece: {:?}", ranges[i]);
        };
        Mke2fs::ext4()
            .tree(t)
            .make(&img, off, &format!("{}k", len / 1024));
    }
    let [(off, len)] = ranges[3][..] else {
        panic!("swap LV in pieces");
    };
    mkswap_at(&img, off, len, None);
    for t in [tree, boot, var, home] {
        fs::remove_dir_all(t).unwrap();
    }
    disk.into_path()
}

#[test]
fn server_layout_is_inspected_prepared_and_shrunk() {
    let dir = tempdir();
    let img = server_layout(dir.path());
    let before = fs::metadata(&img).unwrap().len();
    let src_sum = sha256(&img);
    let out = dir.path().join("out.raw");
    let r = run(&["-o", out.to_str().unwrap(), img.to_str().unwrap()]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert_eq!(sha256(&img), src_sum, "the source was written");
    let meta = meta_of(&out);
    assert_eq!(prop(&meta, "OSFAMILY").as_deref(), Some("linux"));
    assert_eq!(prop(&meta, "OS").as_deref(), Some("debian"));
    assert_eq!(prop(&meta, "ROOT_PARTITION").as_deref(), Some("2"));
    assert_eq!(prop(&meta, "ROOT_LV").as_deref(), Some("vg0/root"));
    assert_eq!(prop(&meta, "SWAP"), None, "a swap LV is kept, not recorded");

    // The LVM tools accept the result, and see the sizes shrink gave.
    let layout = Layout::read_file(&out, 512).unwrap();
    let p2 = layout.partition(2).unwrap().clone();
    assert!(
        fs::metadata(&out).unwrap().len() < before,
        "the image did not get smaller"
    );
    let lvm = Lvm::attach(&out, &[(p2.offset(), p2.size())]);
    lvm.vgck("vg0");
    lvm.pvck(0);
    let rows = lvm.lvs("vg0");
    let size = |lv: &str| {
        rows.iter()
            .filter(|r| r.lv == lv)
            .map(|r| r.size)
            .sum::<u64>()
    };
    // /home is the last filesystem (the swap LV after it is kept and moved down).
    assert_eq!(size("root"), 64 * MIB);
    assert_eq!(size("var"), 16 * MIB);
    assert_eq!(size("swap"), 8 * MIB);
    assert!(size("home") < 16 * MIB, "home not shrunk: {rows:?}");
    let (pv_size, _) = lvm.pv_size(0);
    assert!(pv_size <= p2.size());
    let ranges: Vec<_> = ["root", "var", "home"]
        .iter()
        .map(|lv| lvm.lv_ranges("vg0", lv))
        .collect();
    drop(lvm);
    for (i, what) in [(0, "root LV"), (1, "var LV"), (2, "home LV")] {
        assert_eq!(ranges[i].len(), 1, "{what} in pieces");
        assert_e2fsck_clean(&out, ranges[i][0].0, what);
    }
    // The operations reached every LV (read back with debugfs, not our code).
    let root_fs = dir.path().join("root.fs");
    gather(&out, &ranges[0], &root_fs);
    assert_eq!(
        debugfs_cat(&root_fs, "/etc/machine-id").as_deref(),
        Some(""),
        "machine-id not emptied"
    );
    assert_eq!(debugfs_cat(&root_fs, "/root/.bash_history"), None);
    // The swap LV stays, and so does the fstab line that uses it.
    let fstab = debugfs_cat(&root_fs, "/etc/fstab").unwrap();
    assert!(fstab.contains("/dev/mapper/vg0-swap none swap"), "{fstab}");
    let var_fs = dir.path().join("var.fs");
    gather(&out, &ranges[1], &var_fs);
    assert_eq!(debugfs_cat(&var_fs, "/lib/dhcp/dhclient.leases"), None);
    let home_fs = dir.path().join("home.fs");
    gather(&out, &ranges[2], &home_fs);
    assert_eq!(debugfs_cat(&home_fs, "/user/.bash_history"), None);
}

#[test]
fn inspection_names_the_root_lv_and_every_mount() {
    let dir = tempdir();
    let img = server_layout(dir.path());
    let r = run(&["--print-metadata", "--json", img.to_str().unwrap()]);
    assert!(r.status.success(), "{}", stderr(&r));
    let text = stdout(&r);
    assert!(text.contains("\"ROOT_LV\""), "{text}");
    assert!(text.contains("vg0/root"), "{text}");
    let err = stderr(&r);
    assert!(!err.contains("Unable to mount"), "{err}");
}

/// MBR: p1 /boot, p2 and p3 PVs of VG `big`: `root` on p2, `home` made on p2 and
/// extended onto p3 (two pieces on two partitions), `data` made after root on p2 and
/// extended there after home (two pieces on one partition).
fn split_layout(dir: &Path) -> (PathBuf, Vec<(u64, u64)>) {
    let disk = Disk::create(
        dir.join("split.img"),
        200 * MIB,
        "label: dos\nstart=2048, size=16M, type=83\nsize=96M, type=8e\ntype=8e\n",
    );
    let lvm = Lvm::attach(
        disk.path(),
        &[
            (disk.offset(2), disk.size(2)),
            (disk.offset(3), disk.size(3)),
        ],
    );
    lvm.pvcreate(&[0, 1], &[]);
    lvm.vgcreate("big", &[0, 1], &[]);
    lvm.lvcreate("big", "root", "48M", &[0]);
    lvm.lvcreate("big", "home", "28M", &[0]);
    lvm.lvextend("big", "home", "60M", &[1]);
    let home = lvm.lv_ranges("big", "home");
    let root = lvm.lv_ranges("big", "root");
    assert_eq!(home.len(), 2, "home should span both PVs: {home:?}");
    drop(lvm);
    let tree = dir.join("split.tree");
    lvm_root(
        &tree,
        "/dev/big/root / ext4 defaults 0 1\n/dev/mapper/big-home /home ext4 defaults 0 2\n",
    );
    let h = dir.join("split.home");
    write_file(&h, "/user/.bash_history", "split secret\n");
    write_file(&h, "/user/big.bin", pseudo_random(40 << 20, 5));
    let img = disk.path().to_path_buf();
    ext4_into_pieces(&img, &root, Some(&tree), "root");
    ext4_into_pieces(&img, &home, Some(&h), "home");
    fs::remove_dir_all(tree).unwrap();
    fs::remove_dir_all(h).unwrap();
    (disk.into_path(), home)
}

#[test]
fn a_volume_in_pieces_over_two_partitions_is_prepared_in_place() {
    let dir = tempdir();
    let (img, _) = split_layout(dir.path());
    let out = dir.path().join("out.raw");
    let r = run(&["-o", out.to_str().unwrap(), img.to_str().unwrap()]);
    assert!(r.status.success(), "{}", stderr(&r));
    let meta = meta_of(&out);
    assert_eq!(prop(&meta, "ROOT_LV").as_deref(), Some("big/root"));
    let layout = Layout::read_file(&out, 512).unwrap();
    let (p2, p3) = (
        layout.partition(2).unwrap().clone(),
        layout.partition(3).unwrap().clone(),
    );
    let lvm = Lvm::attach(&out, &[(p2.offset(), p2.size()), (p3.offset(), p3.size())]);
    lvm.vgck("big");
    let home = lvm.lv_ranges("big", "home");
    drop(lvm);
    let home_fs = dir.path().join("home.fs");
    gather(&out, &home, &home_fs);
    let fsck = Command::new("e2fsck")
        .args(["-fn"])
        .arg(&home_fs)
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "{}",
        String::from_utf8_lossy(&fsck.stdout)
    );
    assert_eq!(
        debugfs_cat(&home_fs, "/user/.bash_history"),
        None,
        "the split /home was not prepared"
    );
    assert!(debugfs_cat(&home_fs, "/user/big.bin").is_some());
}

#[test]
fn a_thin_root_is_refused_by_name() {
    let dir = tempdir();
    let disk = Disk::create(
        dir.path().join("thin.img"),
        120 * MIB,
        "label: dos\nstart=2048, type=8e\n",
    );
    let lvm = Lvm::attach(disk.path(), &[(disk.offset(1), disk.size(1))]);
    lvm.pvcreate(&[0], &[]);
    lvm.vgcreate("tvg", &[0], &[]);
    lvm.thin("tvg", "pool", "64M", "root", "200M");
    drop(lvm);
    let out = dir.path().join("out.raw");
    let r = run(&["-o", out.to_str().unwrap(), disk.path().to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(1), "{}", stderr(&r));
    let err = stderr(&r);
    assert!(err.contains("LV tvg/root") && err.contains("thin"), "{err}");
    assert!(!out.exists());
}

#[test]
fn an_lvm_image_needs_no_root() {
    let dir = tempdir();
    let img = server_layout(dir.path());
    let out = dir.path().join("out.raw");
    fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    fs::set_permissions(&img, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let r = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(bin())
        .args(["--tmpdir", dir.path().to_str().unwrap()])
        .args(["-o", out.to_str().unwrap(), img.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(prop(&meta_of(&out), "ROOT_LV").as_deref(), Some("vg0/root"));
}

#[test]
fn uploading_an_lvm_root_to_synnefo_says_snf_image_cannot_deploy_it() {
    let dir = tempdir();
    let img = server_layout(dir.path());
    let server = synnefo::Synnefo::start("lvm-token", synnefo::DEFAULT_BLOCK_SIZE);
    let r = run(&[
        "-a",
        &server.auth_url(),
        "-t",
        "lvm-token",
        "-u",
        "lvm.diskdump",
        img.to_str().unwrap(),
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    let err = stderr(&r);
    assert!(
        err.contains("vg0/root") && err.contains("snf-image") && err.contains("cannot deploy"),
        "{err}"
    );
    // Said before the long work, not after the upload.
    let warned = err.find("cannot deploy").unwrap();
    let dumped = err.find("Dumping image file").unwrap_or(usize::MAX);
    assert!(warned < dumped, "{err}");
}
