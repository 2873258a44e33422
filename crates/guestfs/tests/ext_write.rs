//! Writing real ext2/3/4 filesystems through the ext backend. After every write test
//! `e2fsck -fn` must find nothing to fix, and deletes must give blocks and inodes back.

mod ext_common;

use std::ffi::OsStr;
use std::fs;
use std::process::Command;

use ext_common::*;
use snf_guestfs::{Error, ExtFs, Filesystem, NewNode, NodeId, SetAttr};

const OFFSET: u64 = 3 * 512 * 1024;

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(31).wrapping_add(seed as u32 * 7) as u8 ^ (i >> 9) as u8)
        .collect()
}

fn read_all(fs: &mut ExtFs, node: NodeId) -> Vec<u8> {
    let size = fs.metadata(node).unwrap().size as usize;
    let mut buf = vec![0u8; size + 10];
    let mut done = 0;
    loop {
        let n = fs.read_at(node, done as u64, &mut buf[done..]).unwrap();
        if n == 0 {
            break;
        }
        done += n;
    }
    buf.truncate(done);
    buf
}

/// A filesystem made from a small source tree, plus its pristine free counts.
fn fixture(cfg: Config, size: &str) -> (Image, (u64, u64)) {
    let src = tempfile::tempdir().unwrap();
    fs::create_dir(src.path().join("etc")).unwrap();
    fs::write(src.path().join("etc/hostname"), b"guest\n").unwrap();
    fs::create_dir(src.path().join("var")).unwrap();
    fs::create_dir(src.path().join("var/log")).unwrap();
    fs::write(src.path().join("var/log/syslog"), pattern(200_000, 1)).unwrap();
    let img = mkfs(src.path(), cfg, size, OFFSET);
    let counts = img.free_counts();
    (img, counts)
}

fn marker_intact(img: &Image) {
    let data = fs::read(&img.path).unwrap();
    assert!(
        data[..OFFSET as usize].iter().all(|&b| b == 0x5a),
        "bytes before the filesystem were changed"
    );
}

fn content_lifecycle(cfg: Config) {
    let (img, pristine) = fixture(cfg, "64M");
    {
        let mut fs = img.open(true);
        assert!(fs.is_writable());
        let root = fs.root();
        let f = fs
            .create_file(root, os("data.bin"), NewNode::root(0o640))
            .unwrap();
        let md = fs.metadata(f).unwrap();
        assert_eq!((md.size, md.mode, md.nlink), (0, 0o640, 1));
        let data = pattern(3 << 20, 2);
        fs.write_at(f, 0, &data).unwrap();
        assert_eq!(read_all(&mut fs, f), data);
        // Overwrite in the middle, across block boundaries.
        fs.write_at(f, 1_000_000, b"MIDDLE-OF-THE-FILE").unwrap();
        let mut expect = data.clone();
        expect[1_000_000..1_000_018].copy_from_slice(b"MIDDLE-OF-THE-FILE");
        assert_eq!(read_all(&mut fs, f), expect);
        // Extend far past the end: a hole, one new block.
        let before = fs.metadata(f).unwrap().allocated;
        fs.write_at(f, 40 << 20, b"far").unwrap();
        let md = fs.metadata(f).unwrap();
        assert_eq!(md.size, (40 << 20) + 3);
        assert!(md.allocated <= before + 3 * 4096, "hole stays unallocated");
        let mut buf = vec![0xffu8; 8192];
        assert_eq!(fs.read_at(f, 20 << 20, &mut buf).unwrap(), 8192);
        assert!(buf.iter().all(|&b| b == 0));
        // Truncate down frees the blocks; extend again reads zeros, not old data.
        fs.set_len(f, 1000).unwrap();
        let md = fs.metadata(f).unwrap();
        assert_eq!(md.size, 1000);
        assert!(
            md.allocated <= 8192,
            "allocated {} after truncate",
            md.allocated
        );
        fs.set_len(f, 5000).unwrap();
        let got = read_all(&mut fs, f);
        assert_eq!(&got[..1000], &expect[..1000]);
        assert!(
            got[1000..].iter().all(|&b| b == 0),
            "old data after truncate+extend"
        );
        fs.sync().unwrap();
        img.assert_clean(&format!("{}: writes and truncation", cfg.name));
        fs.unlink(root, os("data.bin")).unwrap();
        assert_eq!(fs.lookup(root, os("data.bin")).unwrap(), None);
        assert!(matches!(
            fs.unlink(root, os("data.bin")),
            Err(Error::NotFound(_))
        ));
        fs.close().unwrap();
    }
    img.assert_clean(&format!("{}: unlink", cfg.name));
    assert_eq!(
        img.free_counts(),
        pristine,
        "{}: space given back",
        cfg.name
    );
    marker_intact(&img);
}

#[test]
fn content_lifecycle_ext2() {
    content_lifecycle(EXT2);
}
#[test]
fn content_lifecycle_ext3() {
    content_lifecycle(EXT3);
}
#[test]
fn content_lifecycle_ext4() {
    content_lifecycle(EXT4);
}
#[test]
fn content_lifecycle_ext4_full() {
    content_lifecycle(EXT4_FULL);
}

fn xattrs_and_links(cfg: Config) {
    require("setfattr");
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("conf");
    fs::write(&file, b"original content that is replaced\n").unwrap();
    run(Command::new("setfattr")
        .args(["-n", "user.small", "-v", "s"])
        .arg(&file));
    run(Command::new("setfattr")
        .args(["-n", "user.large", "-v", &"L".repeat(900)])
        .arg(&file));
    fs::hard_link(&file, src.path().join("conf.link")).unwrap();
    let img = mkfs(src.path(), cfg, "32M", OFFSET);
    let pristine = img.free_counts();
    let mut fs = img.open(true);
    let root = fs.root();
    let node = fs.lookup(root, os("conf")).unwrap().unwrap();
    let xattrs = fs.xattrs(node).unwrap();
    assert_eq!(xattrs.len(), 2, "{xattrs:?}");
    assert!(
        fs.ext2fs().inode(node as u32).unwrap().xattr_block != 0,
        "{}: the large value lives in an xattr block",
        cfg.name
    );
    // Replace the content the way sysprep edits files: truncate and write.
    fs.set_len(node, 0).unwrap();
    fs.write_at(node, 0, b"new\n").unwrap();
    assert_eq!(read_all(&mut fs, node), b"new\n");
    assert_eq!(fs.xattrs(node).unwrap(), xattrs, "xattrs survive a rewrite");
    fs.sync().unwrap();
    img.assert_clean(&format!("{}: rewrite", cfg.name));

    // Hard links: the inode lives until its last name goes.
    fs.unlink(root, os("conf")).unwrap();
    let other = fs.lookup(root, os("conf.link")).unwrap().unwrap();
    assert_eq!(other, node);
    assert_eq!(fs.metadata(node).unwrap().nlink, 1);
    assert_eq!(read_all(&mut fs, node), b"new\n");
    fs.hard_link(node, root, os("again")).unwrap();
    assert_eq!(fs.metadata(node).unwrap().nlink, 2);
    assert!(matches!(
        fs.hard_link(node, root, os("again")),
        Err(Error::AlreadyExists(_))
    ));
    fs.unlink(root, os("again")).unwrap();
    // The last unlink must free the data block and the xattr block.
    let info = fs.info();
    let owned = fs.metadata(node).unwrap().allocated / u64::from(info.block_size);
    assert!(owned >= 2, "{}: data + xattr block, got {owned}", cfg.name);
    fs.unlink(root, os("conf.link")).unwrap();
    fs.close().unwrap();
    img.assert_clean(&format!("{}: unlink of the last link", cfg.name));
    let (blocks, inodes) = img.free_counts();
    assert_eq!(inodes, pristine.1 + 1, "{}: inode freed", cfg.name);
    assert_eq!(
        blocks,
        info.free_blocks + owned,
        "{}: blocks freed",
        cfg.name
    );
}

#[test]
fn xattrs_and_links_ext2() {
    xattrs_and_links(EXT2);
}
#[test]
fn xattrs_and_links_ext4() {
    xattrs_and_links(EXT4);
}
#[test]
fn xattrs_and_links_ext4_full() {
    xattrs_and_links(EXT4_FULL);
}

fn directories_and_renames(cfg: Config) {
    let (img, pristine) = fixture(cfg, "32M");
    {
        let mut fs = img.open(true);
        let root = fs.root();
        let root_links = fs.metadata(root).unwrap().nlink;
        let a = fs
            .mkdir(
                root,
                os("a"),
                NewNode {
                    mode: 0o750,
                    uid: 5,
                    gid: 6,
                },
            )
            .unwrap();
        let md = fs.metadata(a).unwrap();
        assert_eq!((md.mode, md.uid, md.gid, md.nlink), (0o750, 5, 6, 2));
        assert_eq!(fs.metadata(root).unwrap().nlink, root_links + 1);
        let b = fs.mkdir(a, os("b"), NewNode::root(0o755)).unwrap();
        let c = fs.mkdir(root, os("c"), NewNode::root(0o755)).unwrap();
        assert!(matches!(
            fs.mkdir(root, os("a"), NewNode::root(0o755)),
            Err(Error::AlreadyExists(_))
        ));
        let f = fs.create_file(b, os("f"), NewNode::root(0o644)).unwrap();
        fs.write_at(f, 0, b"in b").unwrap();
        assert!(matches!(fs.rmdir(root, os("a")), Err(Error::NotEmpty(_))));
        assert!(matches!(fs.rmdir(b, os("f")), Err(Error::NotADirectory(_))));
        assert!(matches!(
            fs.unlink(root, os("a")),
            Err(Error::IsADirectory(_))
        ));

        // Move b from a to c: ".." follows and both parents' counts change.
        fs.rename(a, os("b"), c, os("b2")).unwrap();
        assert_eq!(fs.lookup(a, os("b")).unwrap(), None);
        assert_eq!(fs.lookup(c, os("b2")).unwrap(), Some(b));
        assert_eq!(fs.lookup(b, os("..")).unwrap(), Some(c));
        assert_eq!(fs.metadata(a).unwrap().nlink, 2);
        assert_eq!(fs.metadata(c).unwrap().nlink, 3);
        // A directory cannot move below itself.
        assert!(fs.rename(root, os("c"), b, os("loop")).is_err());
        // Directory over a non-empty directory / over a file; file over a directory.
        let e = fs.mkdir(root, os("e"), NewNode::root(0o755)).unwrap();
        fs.create_file(e, os("x"), NewNode::root(0o644)).unwrap();
        assert!(matches!(
            fs.rename(root, os("a"), root, os("e")),
            Err(Error::NotEmpty(_))
        ));
        let g = fs.create_file(root, os("g"), NewNode::root(0o644)).unwrap();
        assert!(matches!(
            fs.rename(root, os("a"), root, os("g")),
            Err(Error::NotADirectory(_))
        ));
        assert!(matches!(
            fs.rename(root, os("g"), root, os("a")),
            Err(Error::IsADirectory(_))
        ));
        // Directory over an empty directory in another parent.
        fs.rename(c, os("b2"), e, os("x2")).unwrap();
        let x2 = fs.lookup(e, os("x2")).unwrap().unwrap();
        fs.rmdir(e, os("x2")).unwrap_err();
        let empty = fs.mkdir(root, os("empty"), NewNode::root(0o755)).unwrap();
        let _ = empty;
        fs.rename(e, os("x2"), root, os("empty")).unwrap();
        assert_eq!(fs.lookup(root, os("empty")).unwrap(), Some(x2));
        assert_eq!(fs.lookup(x2, os("..")).unwrap(), Some(root));
        // File over file: the old target is freed.
        let h = fs.create_file(root, os("h"), NewNode::root(0o644)).unwrap();
        fs.write_at(h, 0, &pattern(100_000, 3)).unwrap();
        fs.rename(root, os("g"), root, os("h")).unwrap();
        assert_eq!(fs.lookup(root, os("h")).unwrap(), Some(g));
        assert_eq!(fs.lookup(root, os("g")).unwrap(), None);
        // Renaming onto itself or onto another link of the same inode does nothing.
        fs.rename(root, os("h"), root, os("h")).unwrap();
        fs.hard_link(g, root, os("h-link")).unwrap();
        fs.rename(root, os("h"), root, os("h-link")).unwrap();
        assert_eq!(fs.lookup(root, os("h")).unwrap(), Some(g));
        fs.sync().unwrap();
        img.assert_clean(&format!("{}: mkdir and renames", cfg.name));

        // Tear everything down again.
        let emptyd = fs.lookup(root, os("empty")).unwrap().unwrap();
        fs.unlink(emptyd, os("f")).unwrap();
        fs.rmdir(root, os("empty")).unwrap();
        fs.unlink(e, os("x")).unwrap();
        fs.rmdir(root, os("e")).unwrap();
        fs.rmdir(root, os("c")).unwrap();
        fs.rmdir(root, os("a")).unwrap();
        fs.unlink(root, os("h")).unwrap();
        fs.unlink(root, os("h-link")).unwrap();
        assert_eq!(fs.metadata(root).unwrap().nlink, root_links);
        fs.close().unwrap();
    }
    img.assert_clean(&format!("{}: rmdir", cfg.name));
    let (blocks, inodes) = img.free_counts();
    assert_eq!(inodes, pristine.1, "{}: inodes given back", cfg.name);
    // Directories that grew keep their blocks; everything else comes back.
    assert!(
        blocks + 2 >= pristine.0,
        "{}: blocks {blocks} vs {}",
        cfg.name,
        pristine.0
    );
}

#[test]
fn directories_and_renames_ext2() {
    directories_and_renames(EXT2);
}
#[test]
fn directories_and_renames_ext3() {
    directories_and_renames(EXT3);
}
#[test]
fn directories_and_renames_ext4() {
    directories_and_renames(EXT4);
}
#[test]
fn directories_and_renames_ext4_full() {
    directories_and_renames(EXT4_FULL);
}

fn symlinks_and_attributes(cfg: Config) {
    let (img, pristine) = fixture(cfg, "32M");
    {
        let mut fs = img.open(true);
        let root = fs.root();
        let attr = NewNode {
            mode: 0o777,
            uid: 12,
            gid: 34,
        };
        let fast = fs
            .symlink(root, os("fast"), os("etc/hostname"), attr)
            .unwrap();
        let long = "p/".repeat(150);
        let slow = fs.symlink(root, os("slow"), os(&long), attr).unwrap();
        assert_eq!(fs.read_link(fast).unwrap(), "etc/hostname");
        assert_eq!(fs.read_link(slow).unwrap(), long.as_str());
        let md = fs.metadata(slow).unwrap();
        assert!(md.is_symlink());
        assert_eq!((md.uid, md.gid, md.size), (12, 34, long.len() as u64));
        let too_long = "z".repeat(70000);
        assert!(fs
            .symlink(root, os("toolong"), os(&too_long), attr)
            .is_err());
        assert_eq!(fs.lookup(root, os("toolong")).unwrap(), None);

        let etc = fs.lookup(root, os("etc")).unwrap().unwrap();
        let host = fs.lookup(etc, os("hostname")).unwrap().unwrap();
        fs.set_attr(
            host,
            SetAttr {
                mode: Some(0o4711),
                uid: Some(100_000),
                gid: Some(200_000),
                atime: Some(1_000_000_000),
                mtime: Some(1_600_000_000),
            },
        )
        .unwrap();
        let md = fs.metadata(host).unwrap();
        assert!(md.is_file());
        assert_eq!(
            (md.mode, md.uid, md.gid, md.atime, md.mtime),
            (0o4711, 100_000, 200_000, 1_000_000_000, 1_600_000_000)
        );
        fs.sync().unwrap();
        img.assert_clean(&format!("{}: symlinks and attributes", cfg.name));
        fs.unlink(root, os("fast")).unwrap();
        fs.unlink(root, os("slow")).unwrap();
        fs.close().unwrap();
    }
    img.assert_clean(&format!("{}: symlinks removed", cfg.name));
    assert_eq!(
        img.free_counts(),
        pristine,
        "{}: symlink blocks freed",
        cfg.name
    );
}

#[test]
fn symlinks_and_attributes_ext2() {
    symlinks_and_attributes(EXT2);
}
#[test]
fn symlinks_and_attributes_ext4() {
    symlinks_and_attributes(EXT4);
}
#[test]
fn symlinks_and_attributes_ext4_full() {
    symlinks_and_attributes(EXT4_FULL);
}

#[test]
fn times_after_2038_round_trip_on_ext4() {
    require("debugfs");
    let (img, _) = fixture(EXT4, "32M");
    let year_2100 = 4_115_534_400; // 2100-06-01 12:00:00 UTC
    {
        let mut fs = img.open(true);
        let root = fs.root();
        let f = fs
            .create_file(root, os("future"), NewNode::root(0o644))
            .unwrap();
        fs.set_attr(
            f,
            SetAttr {
                mtime: Some(year_2100),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(fs.metadata(f).unwrap().mtime, year_2100);
        fs.close().unwrap();
    }
    img.assert_clean("setting a 2100 mtime");
    let out = run(Command::new("debugfs")
        .args(["-R", "stat future"])
        .arg(img.spec()));
    let mtime = out
        .lines()
        .find(|l| l.trim_start().starts_with("mtime:"))
        .unwrap();
    assert!(mtime.contains("2100"), "debugfs shows {mtime}");
    let mut fs = img.open(false);
    let root = fs.root();
    let f = fs.lookup(root, os("future")).unwrap().unwrap();
    assert_eq!(fs.metadata(f).unwrap().mtime, year_2100);
}

fn htree_deletes_and_inserts(cfg: Config) {
    require("e2fsck");
    let src = tempfile::tempdir().unwrap();
    let dir = src.path().join("spool");
    fs::create_dir(&dir).unwrap();
    for i in 0..3000 {
        fs::write(dir.join(format!("message-{i:06}.eml")), format!("{i}")).unwrap();
    }
    let img = mkfs(src.path(), cfg, "64M", OFFSET);
    // mke2fs -d writes linear directories; e2fsck -D indexes them, as the kernel would.
    let out = Command::new("e2fsck")
        .arg("-fyD")
        .arg(img.spec())
        .output()
        .unwrap();
    assert!(out.status.code().unwrap_or(8) <= 1, "e2fsck -fyD: {out:?}");
    img.assert_clean("indexing");
    let pristine = img.free_counts();
    {
        let mut fs = img.open(true);
        let root = fs.root();
        let spool = fs.lookup(root, os("spool")).unwrap().unwrap();
        let flags = fs.ext2fs().inode(spool as u32).unwrap().flags;
        assert!(
            flags & 0x1000 != 0,
            "{}: spool is hash-indexed (flags {flags:#x})",
            cfg.name
        );
        for i in (0..3000).filter(|i| i % 3 != 0) {
            fs.unlink(spool, os(&format!("message-{i:06}.eml")))
                .unwrap();
        }
        fs.sync().unwrap();
        img.assert_clean(&format!(
            "{}: 2000 deletes from a hashed directory",
            cfg.name
        ));
        let mut names: Vec<String> = fs
            .read_dir(spool)
            .unwrap()
            .into_iter()
            .map(|e| e.name.into_string().unwrap())
            .collect();
        names.sort();
        let expected: Vec<String> = (0..3000)
            .filter(|i| i % 3 == 0)
            .map(|i| format!("message-{i:06}.eml"))
            .collect();
        assert_eq!(names, expected);
        for i in 0..1500 {
            let f = fs
                .create_file(
                    spool,
                    os(&format!("new-{i}-with-a-long-name")),
                    NewNode::root(0o600),
                )
                .unwrap();
            fs.write_at(f, 0, b"x").unwrap();
        }
        fs.sync().unwrap();
        img.assert_clean(&format!(
            "{}: 1500 inserts into a hashed directory",
            cfg.name
        ));
        assert!(fs
            .lookup(spool, os("new-1499-with-a-long-name"))
            .unwrap()
            .is_some());
        assert!(fs
            .lookup(spool, os("message-000003.eml"))
            .unwrap()
            .is_some());
        let all: Vec<_> = fs.read_dir(spool).unwrap();
        assert_eq!(all.len(), 1000 + 1500);
        for e in all {
            fs.unlink(spool, &e.name).unwrap();
        }
        fs.rmdir(root, os("spool")).unwrap();
        fs.close().unwrap();
    }
    img.assert_clean(&format!(
        "{}: emptied and removed the hashed directory",
        cfg.name
    ));
    let (blocks, inodes) = img.free_counts();
    assert_eq!(inodes, pristine.1 + 3001, "{}: inodes", cfg.name);
    assert!(blocks > pristine.0, "{}: blocks", cfg.name);
}

#[test]
fn htree_deletes_and_inserts_ext3() {
    htree_deletes_and_inserts(EXT3);
}
#[test]
fn htree_deletes_and_inserts_ext4() {
    htree_deletes_and_inserts(EXT4);
}
#[test]
fn htree_deletes_and_inserts_ext4_csum() {
    htree_deletes_and_inserts(EXT4_FULL);
}

#[test]
fn running_out_of_space_is_reported_and_recoverable() {
    let (img, pristine) = fixture(EXT2, "4M");
    {
        let mut fs = img.open(true);
        let root = fs.root();
        let f = fs
            .create_file(root, os("filler"), NewNode::root(0o644))
            .unwrap();
        let chunk = pattern(256 * 1024, 9);
        let mut off = 0u64;
        let err = loop {
            match fs.write_at(f, off, &chunk) {
                Ok(()) => off += chunk.len() as u64,
                Err(e) => break e,
            }
            assert!(off < 64 << 20, "a 4 MiB filesystem took {off} bytes");
        };
        assert!(matches!(err, Error::NoSpace(_)), "{err}");
        fs.sync().unwrap();
        img.assert_clean("filling the filesystem");
        fs.unlink(root, os("filler")).unwrap();
        fs.close().unwrap();
    }
    img.assert_clean("removing the filler");
    assert_eq!(img.free_counts(), pristine);
}

#[test]
fn names_are_validated() {
    let (img, _) = fixture(EXT4, "16M");
    let mut fs = img.open(true);
    let root = fs.root();
    for bad in ["", ".", "..", "a/b"] {
        assert!(
            matches!(
                fs.create_file(root, os(bad), NewNode::root(0o644)),
                Err(Error::InvalidPath(_))
            ),
            "{bad:?}"
        );
    }
    let long = "n".repeat(256);
    assert!(fs.mkdir(root, os(&long), NewNode::root(0o755)).is_err());
    let ok = "n".repeat(255);
    fs.mkdir(root, os(&ok), NewNode::root(0o755)).unwrap();
    fs.close().unwrap();
    img.assert_clean("a 255-byte name");
}

#[test]
fn errors_state_is_reported() {
    require("debugfs");
    let (img, _) = fixture(EXT4, "16M");
    run(Command::new("debugfs")
        .args(["-w", "-R", "ssv state 2"])
        .arg(img.spec()));
    for writable in [false, true] {
        let err = ExtFs::open(&img.path, img.offset, writable).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("having errors"), "{err}");
        assert!(err.to_string().contains("disk.img"), "{err}");
    }
}

#[test]
fn journal_needing_recovery_is_replayed_on_writable_open() {
    require("debugfs");
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("a.txt"), b"old").unwrap();
    let img = mkfs(src.path(), EXT4, "32M", OFFSET);
    // Commit a transaction to the journal that rewrites a.txt's block, without
    // checkpointing it: a real "needs_recovery" filesystem, as after a crash.
    let bmap = run(Command::new("debugfs")
        .args(["-R", "bmap a.txt 0"])
        .arg(img.spec()));
    let block: u64 = bmap.trim().parse().expect("block number");
    let newblk = img.dir.path().join("newblk");
    let mut data = b"new".to_vec();
    data.resize(4096, 0);
    fs::write(&newblk, data).unwrap();
    let script = img.dir.path().join("cmds");
    fs::write(
        &script,
        format!("jo\njw -b {block} {}\njc\n", newblk.display()),
    )
    .unwrap();
    run(Command::new("debugfs")
        .arg("-w")
        .arg("-f")
        .arg(&script)
        .arg(img.spec()));
    let dump = run(Command::new("dumpe2fs").arg("-h").arg(img.spec()));
    assert!(
        dump.contains("needs_recovery"),
        "fixture has no pending journal:\n{dump}"
    );

    let err = ExtFs::open(&img.path, img.offset, false).unwrap_err();
    assert!(err.to_string().contains("journal"), "{err}");
    assert!(err.to_string().contains("needs recovery"), "{err}");

    let mut fs = img.open(true);
    assert!(!fs.info().needs_recovery());
    let root = fs.root();
    let a = fs.lookup(root, os("a.txt")).unwrap().unwrap();
    assert_eq!(
        read_all(&mut fs, a),
        b"new",
        "the journaled block was replayed"
    );
    fs.close().unwrap();
    img.assert_clean("journal replay");
    marker_intact(&img);
}

#[test]
fn dropping_a_writable_handle_writes_everything_back() {
    let (img, pristine) = fixture(EXT4_FULL, "16M");
    {
        let mut fs = img.open(true);
        let root = fs.root();
        for i in 0..50 {
            let f = fs
                .create_file(root, os(&format!("f{i}")), NewNode::root(0o644))
                .unwrap();
            fs.write_at(f, 0, &pattern(5000, i as u8)).unwrap();
        }
        // No sync, no close: Drop must flush.
    }
    img.assert_clean("drop without close");
    let (blocks, inodes) = img.free_counts();
    assert_eq!(inodes, pristine.1 - 50);
    assert!(blocks < pristine.0);
}
