//! The binding on real filesystems: no root needed for image files, xattr writes,
//! the used-block map.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use ext2fs::{ErrorKind, Ext2Fs, ExtKind, NewInode, ROOT_INO};
use snf_testkit::fixture::{assert_e2fsck_clean, require, set_ext_feature_bits, Mke2fs};

fn mkfs(dir: &Path, src: &Path, args: &[&str], offset: u64) -> std::path::PathBuf {
    let img = dir.join("disk.img");
    Mke2fs::with_args(args).tree(src).make(&img, offset, "16M");
    img
}

const CHILD_ENV: &str = "EXT2FS_UNPRIVILEGED_CHILD_IMAGE";

/// Run by `image_files_need_no_root` as user 65534; does nothing otherwise.
#[test]
#[ignore = "run by image_files_need_no_root as an unprivileged user"]
fn unprivileged_child() {
    let Ok(img) = std::env::var(CHILD_ENV) else {
        return;
    };
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid_line.split_whitespace().skip(1).all(|u| u == "65534"),
        "child is not unprivileged: {uid_line}"
    );
    let mut fs = Ext2Fs::open(Path::new(&img), 8192, true).expect("open as nobody");
    let f = fs
        .lookup(ROOT_INO, b"hello")
        .unwrap()
        .expect("hello exists");
    let mut buf = [0u8; 64];
    let n = fs.read_at(f, 0, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"hello from the guest\n");
    let new = fs
        .create(
            ROOT_INO,
            b"written-by-nobody",
            NewInode {
                mode: 0o644,
                uid: 0,
                gid: 0,
            },
        )
        .unwrap();
    fs.write_at(new, 0, b"no root needed\n").unwrap();
    fs.unlink(ROOT_INO, b"hello").unwrap();
    fs.close().unwrap();
}

#[test]
fn image_files_need_no_root() {
    require("setpriv");
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("hello"), b"hello from the guest\n").unwrap();
    let img = mkfs(dir.path(), &src, &["-t", "ext4"], 8192);
    std::os::unix::fs::chown(&img, Some(65534), Some(65534)).expect("chown (tests run as root)");
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&exe)
        .args([
            "--exact",
            "unprivileged_child",
            "--include-ignored",
            "--nocapture",
        ])
        .env(CHILD_ENV, &img)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "unprivileged run failed:\n{text}");
    assert!(
        text.contains("1 passed"),
        "the child test did not run:\n{text}"
    );
    assert_e2fsck_clean(&img, 8192, "the test image");
    let mut fs = Ext2Fs::open(&img, 8192, false).unwrap();
    assert!(fs.lookup(ROOT_INO, b"hello").unwrap().is_none());
    let f = fs.lookup(ROOT_INO, b"written-by-nobody").unwrap().unwrap();
    let mut buf = [0u8; 64];
    let n = fs.read_at(f, 0, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"no root needed\n");
}

#[test]
fn xattrs_can_be_set_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), b"x").unwrap();
    for args in [&["-t", "ext4"][..], &["-t", "ext2", "-b", "1024"][..]] {
        let img = mkfs(dir.path(), &src, args, 0);
        let mut fs = Ext2Fs::open(&img, 0, true).unwrap();
        let f = fs.lookup(ROOT_INO, b"f").unwrap().unwrap();
        fs.set_xattr(f, b"user.small", b"v").unwrap();
        fs.set_xattr(f, b"security.selinux", b"system_u:object_r:etc_t:s0\0")
            .unwrap();
        fs.set_xattr(f, b"user.large", &[b'L'; 700]).unwrap();
        let mut got = fs.xattrs(f).unwrap();
        got.sort();
        assert_eq!(got.len(), 3, "{args:?}");
        assert_eq!(got[2], (b"user.small".to_vec(), b"v".to_vec()));
        fs.flush().unwrap();
        assert_e2fsck_clean(&img, 0, "the test image");
        fs.remove_xattr(f, b"user.large").unwrap();
        fs.remove_xattr(f, b"security.selinux").unwrap();
        let err = fs.remove_xattr(f, b"user.absent").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        assert_eq!(
            fs.xattrs(f).unwrap(),
            vec![(b"user.small".to_vec(), b"v".to_vec())]
        );
        fs.close().unwrap();
        assert_e2fsck_clean(&img, 0, "the test image");
    }
}

#[test]
fn used_block_ranges_match_the_bitmap() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), vec![7u8; 300_000]).unwrap();
    let img = mkfs(dir.path(), &src, &["-t", "ext2", "-b", "1024"], 0);
    let mut fs = Ext2Fs::open(&img, 0, true).unwrap();
    let info = fs.info();
    assert_eq!(info.kind(), ExtKind::Ext2);
    assert_eq!(info.first_data_block, 1);
    let ranges = fs.used_block_ranges().unwrap();
    assert_eq!(ranges[0].0, 0, "the boot block counts as used");
    assert!(
        ranges.windows(2).all(|w| w[0].0 + w[0].1 < w[1].0),
        "sorted, merged"
    );
    let used: u64 = ranges.iter().map(|r| r.1).sum();
    assert_eq!(used, info.blocks_count - info.free_blocks);
    // Deleting the file frees its blocks in the map and the counts alike.
    fs.unlink(ROOT_INO, b"f").unwrap();
    let after: u64 = fs.used_block_ranges().unwrap().iter().map(|r| r.1).sum();
    assert!(after + 290 < used, "{after} vs {used}");
    assert_eq!(after, fs.info().blocks_count - fs.info().free_blocks);
    fs.close().unwrap();
    assert_e2fsck_clean(&img, 0, "the test image");
}

#[test]
fn read_only_handles_refuse_writes() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    let img = mkfs(dir.path(), &src, &["-t", "ext4"], 0);
    let mut fs = Ext2Fs::open(&img, 0, false).unwrap();
    let err = fs
        .mkdir(
            ROOT_INO,
            b"d",
            NewInode {
                mode: 0o755,
                uid: 0,
                gid: 0,
            },
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ReadOnly);
    assert!(err.to_string().contains("read-only"), "{err}");
}

/// Files under the scratch directory are written without fsync and without unix_io's
/// block cache: every write must still reach the file at once, so a flush leaves a
/// consistent filesystem that other readers (e2fsck, a second handle) see while the
/// writer is still open.
#[test]
fn scratch_copies_are_consistent_without_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), b"x").unwrap();
    let scratch = dir.path().join("scratch");
    fs::create_dir(&scratch).unwrap();
    ext2fs::set_scratch_dir(Some(&scratch));
    for (i, args) in [&["-t", "ext4"][..], &["-t", "ext2", "-b", "1024"][..]]
        .into_iter()
        .enumerate()
    {
        let img = mkfs(&scratch, &src, args, 4096 * i as u64);
        let offset = 4096 * i as u64;
        let mut fs = Ext2Fs::open(&img, offset, true).unwrap();
        let f = fs.lookup(ROOT_INO, b"f").unwrap().unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|n| (n % 251) as u8).collect();
        fs.write_at(f, 0, &data).unwrap();
        fs.set_xattr(f, b"user.k", b"v").unwrap();
        fs.flush().unwrap();
        assert_e2fsck_clean(&img, offset, "the test image");
        let mut other = Ext2Fs::open(&img, offset, false).unwrap();
        let mut buf = vec![0u8; data.len() + 10];
        let n = other.read_at(f, 0, &mut buf).unwrap();
        assert_eq!(&buf[..n], &data[..], "{args:?}");
        drop(other);
        fs.unlink(ROOT_INO, b"f").unwrap();
        fs.close().unwrap();
        assert_e2fsck_clean(&img, offset, "the test image");
        let mut fs = Ext2Fs::open(&img, offset, false).unwrap();
        assert_eq!(fs.lookup(ROOT_INO, b"f").unwrap(), None, "{args:?}");
    }
    ext2fs::set_scratch_dir(None);
}

#[test]
fn unsupported_features_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    let version = ext2fs::library_version();
    assert!(version.starts_with("1."), "{version}");
    // With and without metadata_csum: the refusal must be about the feature, not a
    // checksum.
    for args in [
        &["-t", "ext4"][..],
        &["-t", "ext4", "-O", "^metadata_csum"][..],
    ] {
        let img = mkfs(dir.path(), &src, args, 8192);
        set_ext_feature_bits(&img, 8192, 0x60, 0x80000);
        for writable in [false, true] {
            let err = Ext2Fs::open(&img, 8192, writable).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
            let text = err.to_string();
            assert!(
                text.contains(&format!(
                    "the ext4 filesystem at byte offset 8192 uses a feature libext2fs \
                     {version} does not support: incompat 0x80000"
                )),
                "{args:?}: {text}"
            );
        }
    }
    // Known names for known bits; several at once.
    let img = mkfs(dir.path(), &src, &["-t", "ext2"], 0);
    set_ext_feature_bits(
        &img,
        0,
        0x60,
        ext2fs::feature::INCOMPAT_COMPRESSION | 0x4000_0000,
    );
    let text = Ext2Fs::open(&img, 0, false).unwrap_err().to_string();
    assert!(
        text.contains("uses features libext2fs")
            && text.ends_with(": compression, incompat 0x40000000"),
        "{text}"
    );
    // An unknown ro_compat feature allows reading only.
    let img = mkfs(dir.path(), &src, &["-t", "ext4"], 0);
    set_ext_feature_bits(&img, 0, 0x64, 0x4000_0000);
    Ext2Fs::open(&img, 0, false).expect("read-only open");
    let err = Ext2Fs::open(&img, 0, true).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(
        err.to_string()
            .ends_with("does not support: ro_compat 0x40000000"),
        "{err}"
    );
}

/// The final write of a close can fail (here: the image lives on a full tmpfs and the
/// close writes into a hole of it); `close` reports that, it is not lost in `Drop`.
#[test]
fn close_reports_a_failed_final_write() {
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small");
    fs::create_dir(&small).unwrap();
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(&small)
        .status()
        .unwrap();
    assert!(status.success(), "mounting a tmpfs (tests run as root)");
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(&small);
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    // A sparse 64 MiB filesystem: most of its blocks are holes in the tmpfs.
    let img = small.join("disk.img");
    Mke2fs::with_args(&["-t", "ext4"])
        .tree(&src)
        .make(&img, 0, "64M");
    let mut fs = Ext2Fs::open(&img, 0, true).unwrap();
    // Fill the tmpfs: from now on only blocks already stored can be written.
    {
        use std::io::Write;
        let mut filler = fs::File::create(small.join("filler")).unwrap();
        let chunk = vec![0xa5u8; 64 * 1024];
        while filler.write_all(&chunk).is_ok() {}
    }
    let attr = NewInode {
        mode: 0o755,
        uid: 0,
        gid: 0,
    };
    // New directories get new blocks, held in libext2fs' write-back cache until the
    // close writes them out.
    for i in 0..4 {
        fs.mkdir(ROOT_INO, format!("d{i}").as_bytes(), attr)
            .expect("mkdir (cached)");
    }
    let err = fs.close().expect_err("the close must fail on a full tmpfs");
    assert_eq!(err.kind(), ErrorKind::NoSpace, "{err}");
    assert!(err.to_string().starts_with("close"), "{err}");
}
