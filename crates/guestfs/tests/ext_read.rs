//! Reading real ext2/3/4 filesystems made by `mke2fs -d` through the ext backend, and
//! comparing every object with the source directory.

mod ext_common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Command;

use ext_common::*;
use snf_guestfs::{Error, ExtFs, FileType, Filesystem, FsKind};

const OFFSET: u64 = 1 << 20;

fn write(path: &Path, data: &[u8], mode: u32) {
    fs::write(path, data).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn setfattr(path: &Path, name: &str, value: &str) {
    require("setfattr");
    run(Command::new("setfattr")
        .args(["-n", name, "-v", value])
        .arg(path));
}

/// A source tree with what real guests contain.
fn source_tree(root: &Path, huge: u64, trailing_hole: bool) {
    let pattern: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    write(&root.join("empty"), b"", 0o644);
    write(&root.join("tiny"), b"hi\n", 0o600);
    write(&root.join("block-1"), &pattern[..4095], 0o644);
    write(&root.join("block"), &pattern[..4096], 0o644);
    write(&root.join("block+1"), &pattern[..4097], 0o755);
    write(&root.join("big"), &pattern, 0o644);
    write(&root.join("setuid"), b"#!/bin/sh\n", 0o4755);
    fs::create_dir(root.join("etc")).unwrap();
    write(&root.join("etc/hostname"), b"guest\n", 0o644);
    write(
        &root.join("etc/shadow"),
        b"root:*:19000:0:99999:7:::\n",
        0o640,
    );
    std::os::unix::fs::chown(root.join("etc/shadow"), Some(0), Some(42))
        .expect("chown needs root (the tests run as root)");
    fs::create_dir(root.join("home")).unwrap();
    fs::create_dir(root.join("home/user")).unwrap();
    write(
        &root.join("home/user/.bashrc"),
        b"alias ll='ls -l'\n",
        0o644,
    );
    std::os::unix::fs::chown(root.join("home/user"), Some(1000), Some(1000)).unwrap();
    std::os::unix::fs::chown(root.join("home/user/.bashrc"), Some(70000), Some(70001)).unwrap();
    fs::create_dir(root.join("tmp")).unwrap();
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    // Fast (in the inode) and slow (in a block) symlinks.
    symlink("etc/hostname", root.join("fastlink")).unwrap();
    let long_target = format!("{}/target", "d".repeat(120));
    symlink(&long_target, root.join("slowlink")).unwrap();
    symlink("x".repeat(500), root.join("slowlink500")).unwrap();
    // Sparse: data, a hole, data.
    let f = fs::File::create(root.join("sparse")).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_at(b"start", 0).unwrap();
    f.write_at(b"middle", 5 << 20).unwrap();
    if trailing_hole {
        f.set_len(9 << 20).unwrap();
    } else {
        f.write_at(b"end", (9 << 20) - 3).unwrap();
    }
    // Huge and almost empty.
    let f = fs::File::create(root.join("huge")).unwrap();
    f.write_at(b"tail of a huge file", huge - 19).unwrap();
    // Hard links.
    write(&root.join("hard1"), b"linked content\n", 0o644);
    fs::hard_link(root.join("hard1"), root.join("etc/hard2")).unwrap();
    // A FIFO.
    require("mkfifo");
    run(Command::new("mkfifo").arg(root.join("fifo")));
    // Extended attributes, small (in the inode) and large (in an xattr block).
    setfattr(&root.join("tiny"), "user.note", "small value");
    setfattr(&root.join("etc"), "user.dir", "on a directory");
    setfattr(&root.join("big"), "user.big", &"v".repeat(700));
    setfattr(&root.join("big"), "user.other", "second");
    // A directory big enough to span many blocks.
    fs::create_dir(root.join("many")).unwrap();
    for i in 0..1500 {
        fs::write(
            root.join(format!("many/entry-number-{i:05}")),
            format!("{i}\n"),
        )
        .unwrap();
    }
}

/// `trailing_hole`: mke2fs 1.47.0 -d loses the size of a file ending in a hole when
/// it writes an inline_data filesystem, so such configurations get data at the end.
fn check_config(cfg: Config, size: &str, huge: u64, trailing_hole: bool) {
    let src = tempfile::tempdir().unwrap();
    source_tree(src.path(), huge, trailing_hole);
    let img = mkfs(src.path(), cfg, size, OFFSET);
    let expected = host_tree(src.path());
    let mut ext = img.open(false);
    assert!(!ext.is_writable());
    let actual = fs_tree(&mut ext);
    assert_same_tree(&expected, &actual, cfg.name, true);

    // Hard links are one node with two links; the huge file is mostly holes.
    let root = ext.root();
    let h1 = ext.lookup(root, "hard1".as_ref()).unwrap().unwrap();
    let etc = ext.lookup(root, "etc".as_ref()).unwrap().unwrap();
    let h2 = ext.lookup(etc, "hard2".as_ref()).unwrap().unwrap();
    assert_eq!(h1, h2, "{}: hard links share the inode", cfg.name);
    assert_eq!(ext.metadata(h1).unwrap().nlink, 2);
    let huge_node = ext.lookup(root, "huge".as_ref()).unwrap().unwrap();
    let md = ext.metadata(huge_node).unwrap();
    assert_eq!(md.size, huge);
    assert!(
        md.allocated < 1 << 20,
        "{}: huge file allocates {}",
        cfg.name,
        md.allocated
    );
    let mut buf = [0xffu8; 4096];
    assert_eq!(ext.read_at(huge_node, huge / 2, &mut buf).unwrap(), 4096);
    assert!(buf.iter().all(|&b| b == 0), "holes read as zeros");
    assert_eq!(ext.read_at(huge_node, huge, &mut buf).unwrap(), 0, "EOF");
    let sparse = ext.lookup(root, "sparse".as_ref()).unwrap().unwrap();
    assert!(ext.metadata(sparse).unwrap().allocated < 1 << 20);

    // Errors a caller relies on.
    let tiny = ext.lookup(root, "tiny".as_ref()).unwrap().unwrap();
    assert!(matches!(ext.read_dir(tiny), Err(Error::NotADirectory(_))));
    assert!(matches!(ext.read_link(tiny), Err(Error::NotASymlink(_))));
    assert!(matches!(
        ext.read_at(etc, 0, &mut buf),
        Err(Error::IsADirectory(_))
    ));
    assert!(matches!(
        ext.lookup(tiny, "x".as_ref()),
        Err(Error::NotADirectory(_))
    ));
    assert_eq!(ext.lookup(root, "nope".as_ref()).unwrap(), None);
    assert!(matches!(
        ext.create_file(root, "new".as_ref(), snf_guestfs::NewNode::root(0o644)),
        Err(Error::ReadOnly(_))
    ));

    // The superblock.
    let info = ext.info();
    assert_eq!(info.label, "guestroot");
    assert!(info.is_clean() && !info.has_errors() && !info.needs_recovery());
    let blkid = run(Command::new("dumpe2fs").arg("-h").arg(img.spec()));
    assert!(
        blkid.contains(&info.uuid_string()),
        "{}: UUID {} not in dumpe2fs output",
        cfg.name,
        info.uuid_string()
    );
    let (free_blocks, free_inodes) = img.free_counts();
    assert_eq!(
        (info.free_blocks, info.free_inodes),
        (free_blocks, free_inodes)
    );
    let used: u64 = ext
        .used_block_ranges()
        .unwrap()
        .iter()
        .map(|(_, n)| n)
        .sum();
    assert_eq!(
        used,
        info.blocks_count - info.free_blocks,
        "{}: used blocks",
        cfg.name
    );
}

#[test]
fn ext2_small_blocks_reads_like_source() {
    check_config(EXT2, "96M", 3 << 30, true);
}

#[test]
fn ext3_reads_like_source() {
    check_config(EXT3, "96M", 3 << 30, true);
}

#[test]
fn ext4_reads_like_source() {
    check_config(EXT4, "96M", 20 << 30, true);
}

#[test]
fn ext4_csum_64bit_inline_data_reads_like_source() {
    check_config(EXT4_FULL, "96M", 20 << 30, false);
}

#[test]
fn ext2_with_128_byte_inodes_reads_like_source() {
    // 128-byte inodes have no room for the extra time fields.
    let cfg = Config {
        name: "ext2-128-byte-inodes",
        args: &["-t", "ext2", "-I", "128"],
    };
    check_config(cfg, "96M", 2 << 30, true);
}

#[test]
fn kinds_follow_the_features() {
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("f"), b"x").unwrap();
    for (cfg, kind) in [
        (EXT2, FsKind::Ext2),
        (EXT3, FsKind::Ext3),
        (EXT4, FsKind::Ext4),
    ] {
        let img = mkfs(src.path(), cfg, "16M", 0);
        assert_eq!(img.open(false).kind(), kind, "{}", cfg.name);
    }
}

#[test]
fn inline_data_files_and_directories_are_read() {
    let src = tempfile::tempdir().unwrap();
    fs::create_dir(src.path().join("smalldir")).unwrap();
    fs::write(src.path().join("smalldir/a"), b"inline file content").unwrap();
    fs::write(src.path().join("in-inode-and-xattr"), vec![b'q'; 100]).unwrap();
    let img = mkfs(src.path(), EXT4_FULL, "16M", 0);
    let mut ext = img.open(false);
    let root = ext.root();
    let dir = ext.lookup(root, "smalldir".as_ref()).unwrap().unwrap();
    let file = ext.lookup(dir, "a".as_ref()).unwrap().unwrap();
    let two = ext
        .lookup(root, "in-inode-and-xattr".as_ref())
        .unwrap()
        .unwrap();
    let raw = ext.ext2fs();
    assert!(
        raw.inode(dir as u32).unwrap().is_inline(),
        "mke2fs made an inline dir"
    );
    assert!(
        raw.inode(file as u32).unwrap().is_inline(),
        "mke2fs made an inline file"
    );
    assert!(raw.inode(two as u32).unwrap().is_inline());
    let mut buf = [0u8; 200];
    let n = ext.read_at(file, 0, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"inline file content");
    let n = ext.read_at(two, 0, &mut buf).unwrap();
    assert_eq!(&buf[..n], &[b'q'; 100][..]);
    // The inline data's own xattr is content, not an attribute.
    assert_eq!(ext.xattrs(two).unwrap(), Vec::new());
    let names: Vec<_> = ext
        .read_dir(dir)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, vec!["a"]);
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.img");
    let data: Vec<u8> = (0..(4u32 << 20))
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    fs::write(&path, data).unwrap();
    let err = ExtFs::open(&path, 0, false).unwrap_err();
    assert!(err.to_string().contains("garbage.img"), "{err}");
    let err = ExtFs::open(&dir.path().join("missing.img"), 0, false).unwrap_err();
    assert!(err.to_string().contains("missing.img"), "{err}");
}

#[test]
fn directory_listing_is_complete_and_typed() {
    let src = tempfile::tempdir().unwrap();
    let mut expected = BTreeMap::new();
    for i in 0..800 {
        let name = format!("f{i}");
        fs::write(src.path().join(&name), b"").unwrap();
        expected.insert(name, FileType::Regular);
    }
    fs::create_dir(src.path().join("sub")).unwrap();
    expected.insert("sub".into(), FileType::Directory);
    symlink("f1", src.path().join("ln")).unwrap();
    expected.insert("ln".into(), FileType::Symlink);
    expected.insert("lost+found".into(), FileType::Directory);
    let img = mkfs(src.path(), EXT2, "16M", 0);
    let mut ext: Box<dyn Filesystem> = Box::new(img.open(false));
    let root = ext.root();
    let got: BTreeMap<String, FileType> = ext
        .read_dir(root)
        .unwrap()
        .into_iter()
        .map(|e| (e.name.into_string().unwrap(), e.file_type))
        .collect();
    assert_eq!(got, expected);
}
