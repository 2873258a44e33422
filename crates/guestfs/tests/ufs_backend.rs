//! The in-process UFS backend on images made by NetBSD's `makefs` (UFS1, UFS2 where
//! makefs puts it, UFS2 where FreeBSD puts it): every read against the source tree, and
//! every write checked by an fsck-like recount independent of the backend
//! (`snf_testkit::ufs::check`).

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use snf_guestfs::{Error, FileType, GuestFs, NewNode, UfsFs};
use snf_testkit::ufs::{self, Layout};

const LAYOUTS: [Layout; 3] = [Layout::Ufs1, Layout::Ufs2NetBsd, Layout::Ufs2FreeBsd];

struct Fixture {
    _dir: tempfile::TempDir,
    tree: PathBuf,
    img: PathBuf,
}

fn fixture(layout: Layout) -> Fixture {
    fixture_with(layout, 4096, 512)
}

fn fixture_with(layout: Layout, bsize: u32, fsize: u32) -> Fixture {
    let dir = tempfile::Builder::new()
        .prefix("ufs-backend.")
        .tempdir_in(snf_testkit::target_dir())
        .unwrap();
    let tree = dir.path().join("tree");
    ufs::sample_tree(&tree);
    let img = dir.path().join("ufs.img");
    ufs::make_image_with(&img, &tree, layout, 160, bsize, fsize);
    Fixture {
        _dir: dir,
        tree,
        img,
    }
}

/// The whole image file `img` opened as a UFS.
fn open_ufs(img: &Path, writable: bool) -> Result<UfsFs, Error> {
    let size = fs::metadata(img).unwrap().len();
    UfsFs::open(img, 0, size, writable)
}

fn open(f: &Fixture, writable: bool) -> GuestFs {
    GuestFs::new(Box::new(open_ufs(&f.img, writable).unwrap()), "ufs")
}

/// A copy (`cp -a`) of the fixture's source tree, beside it, to change like the image.
fn mirror(f: &Fixture) -> PathBuf {
    let mirror = f._dir.path().join("mirror");
    snf_testkit::fixture::run(
        std::process::Command::new("cp")
            .arg("-a")
            .arg(&f.tree)
            .arg(&mirror),
    );
    mirror
}

/// [`change_both`] on the image (opened writable, then closed) and on a new
/// [`mirror`], which is returned.
fn changed(f: &Fixture) -> PathBuf {
    let mirror = mirror(f);
    let mut g = open(f, true);
    change_both(&mut g, &mirror);
    g.close().unwrap();
    mirror
}

/// Every file, link and directory of `host` is in the guest with the same content.
fn assert_same_tree(g: &mut GuestFs, host: &Path, guest: &Path) {
    let mut names: Vec<_> = fs::read_dir(host)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    let mut got: Vec<_> = g
        .read_dir(guest)
        .unwrap()
        .into_iter()
        .map(|e| e.0)
        .collect();
    got.sort();
    assert_eq!(names, got, "{}", guest.display());
    for n in names {
        let h = host.join(&n);
        let p = guest.join(&n);
        let hm = fs::symlink_metadata(&h).unwrap();
        let gm = g.lstat(&p).unwrap();
        assert_eq!(hm.mode() & 0o7777, gm.mode, "{}", p.display());
        assert_eq!(hm.nlink(), u64::from(gm.nlink), "{}", p.display());
        if hm.is_dir() {
            assert!(gm.is_dir());
            assert_same_tree(g, &h, &p);
        } else if hm.file_type().is_symlink() {
            assert_eq!(
                fs::read_link(&h).unwrap().into_os_string(),
                g.read_link(&p).unwrap()
            );
        } else if hm.file_type().is_fifo() {
            assert_eq!(gm.file_type, FileType::Fifo, "{}", p.display());
        } else if hm.file_type().is_char_device() {
            assert_eq!(gm.file_type, FileType::CharDevice, "{}", p.display());
            assert_ne!(gm.rdev, 0, "{}", p.display());
        } else {
            assert_eq!(hm.len(), gm.size, "{}", p.display());
            assert_eq!(
                fs::read(&h).unwrap(),
                g.read(&p).unwrap(),
                "{}",
                p.display()
            );
        }
    }
}

#[test]
fn makefs_images_read_back_as_their_source_tree() {
    for layout in LAYOUTS {
        let f = fixture(layout);
        ufs::check(&f.img, 0).unwrap_or_else(|e| panic!("{layout:?} fresh from makefs: {e}"));
        let mut g = open(&f, false);
        assert_same_tree(&mut g, &f.tree, Path::new("/"));
        // Reading at an offset inside the double-indirect range.
        let big = fs::read(f.tree.join("var/big")).unwrap();
        let at = 5 << 20;
        let mut buf = vec![0u8; 10_000];
        let n = g
            .read_at(Path::new("/var/big"), at as u64, &mut buf)
            .unwrap();
        assert_eq!(&buf[..n], &big[at..at + 10_000]);
        let e = g
            .write(Path::new("/etc/x"), b"no", NewNode::root(0o644))
            .unwrap_err();
        assert!(matches!(e, Error::ReadOnly(_)), "{e}");
    }
}

/// The same changes made to the image through the backend and to `mirror` on the host.
fn change_both(g: &mut GuestFs, mirror: &Path) {
    let p = |s: &str| PathBuf::from(s);
    let h = |s: &str| mirror.join(s.trim_start_matches('/'));
    let big = snf_testkit::fixture::pseudo_random(70_000, 99);

    // Unlinks: a hard link (the file stays), then the file; a long symlink (its block
    // freed) and a short one.
    for f in [
        "/etc/motd.hard",
        "/etc/motd",
        "/etc/long",
        "/etc/short",
        "/var/null",
    ] {
        g.unlink(&p(f)).unwrap();
        fs::remove_file(h(f)).unwrap();
    }
    g.rmdir(&p("/var/emptydir")).unwrap();
    fs::remove_dir(h("/var/emptydir")).unwrap();
    let e = g.rmdir(&p("/var/small")).unwrap_err();
    assert!(matches!(e, Error::NotEmpty(_)), "{e}");

    // Truncations: inside the double-indirect range, to a tail fragment run, to zero.
    for (f, len) in [
        ("/var/big", 3_000_001u64),
        ("/var/small/40000", 5000),
        ("/var/small/4097", 0),
        ("/var/zeros", 12 * 4096 + 1),
    ] {
        g.truncate(&p(f), len).unwrap();
        fs::OpenOptions::new()
            .write(true)
            .open(h(f))
            .unwrap()
            .set_len(len)
            .unwrap();
    }
    // Rewrites: smaller, and larger (a fragment tail becomes blocks and an indirect).
    let rewrites: [(&str, &[u8]); 3] = [
        ("/etc/master.passwd", b"root:*:0:0::0:0::/root:/bin/sh\n"),
        ("/var/small/513", &big),
        ("/var/small/4096", &big[..4097]),
    ];
    for (f, data) in rewrites {
        g.write(&p(f), data, NewNode::root(0o644)).unwrap();
        fs::write(h(f), data).unwrap();
    }
    // Appends growing a fragment run in place or by moving it.
    for (f, at, len) in [
        ("/var/small/1", 1u64, 600usize),
        ("/var/small/511", 511, 3000),
    ] {
        let data = &big[..len];
        g.write_at(&p(f), at, data).unwrap();
        let file = fs::OpenOptions::new().write(true).open(h(f)).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&file, data, at).unwrap();
    }
    // Sparse growth, then a write far past the old end.
    g.truncate(&p("/var/small/3000"), 10 << 20).unwrap();
    g.write_at(&p("/var/small/3000"), 8 << 20, b"island")
        .unwrap();
    {
        let f = fs::OpenOptions::new()
            .write(true)
            .open(h("/var/small/3000"))
            .unwrap();
        f.set_len(10 << 20).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, b"island", 8 << 20).unwrap();
    }
    // New files: one, and enough to grow a directory by chunks and blocks.
    g.write(
        &p("/etc/rc.conf"),
        b"sshd_enable=\"YES\"\n",
        NewNode::root(0o644),
    )
    .unwrap();
    fs::write(h("/etc/rc.conf"), b"sshd_enable=\"YES\"\n").unwrap();
    for i in 0..150 {
        let f = format!("/usr/many/new-entry-{i:04}");
        g.write(&p(&f), format!("n{i}").as_bytes(), NewNode::root(0o600))
            .unwrap();
        fs::write(h(&f), format!("n{i}")).unwrap();
        fs::set_permissions(h(&f), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    }
    for i in (0..100).step_by(3) {
        let f = format!("/usr/many/entry-with-a-longish-name-{i:03}");
        g.unlink(&p(&f)).unwrap();
        fs::remove_file(h(&f)).unwrap();
    }
    // New directories and symlinks, renames (across directories, over an existing
    // file, a directory in place).
    g.mkdir(&p("/var/newdir"), NewNode::root(0o755)).unwrap();
    fs::create_dir(h("/var/newdir")).unwrap();
    g.write(&p("/var/newdir/inside"), b"in", NewNode::root(0o644))
        .unwrap();
    fs::write(h("/var/newdir/inside"), b"in").unwrap();
    let long_target = "b/".repeat(70) + "end";
    for (link, target) in [
        ("/var/newdir/s", "inside"),
        ("/var/l", long_target.as_str()),
    ] {
        g.symlink(target.as_ref(), &p(link), NewNode::root(0o777))
            .unwrap();
        std::os::unix::fs::symlink(target, h(link)).unwrap();
    }
    for (from, to) in [
        ("/var/small/1", "/etc/moved"),
        ("/var/small/511", "/var/small/512"),
        ("/var/newdir", "/var/renamed"),
    ] {
        g.rename(&p(from), &p(to)).unwrap();
        fs::rename(h(from), h(to)).unwrap();
    }
    // A directory moved to another parent (its `..` and both link counts change), and
    // one that cannot move below itself.
    g.mkdir(&p("/etc/sub"), NewNode::root(0o700)).unwrap();
    fs::create_dir(h("/etc/sub")).unwrap();
    fs::set_permissions(
        h("/etc/sub"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    g.mkdir(&p("/etc/sub/deeper"), NewNode::root(0o755))
        .unwrap();
    fs::create_dir(h("/etc/sub/deeper")).unwrap();
    g.rename(&p("/etc/sub"), &p("/var/renamed/sub")).unwrap();
    fs::rename(h("/etc/sub"), h("/var/renamed/sub")).unwrap();
    assert!(g
        .rename(&p("/var/renamed"), &p("/var/renamed/sub/deeper/x"))
        .is_err());
    g.hard_link(&p("/etc/rc.conf"), &p("/var/rc.link")).unwrap();
    fs::hard_link(h("/etc/rc.conf"), h("/var/rc.link")).unwrap();
    fs::set_permissions(
        h("/etc/rc.conf"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
}

#[test]
fn writes_keep_the_filesystem_consistent_and_read_back() {
    for layout in LAYOUTS {
        let f = fixture(layout);
        let mirror = changed(&f);
        ufs::check(&f.img, 0).unwrap_or_else(|e| panic!("{layout:?} after the changes: {e}"));
        let mut g = open(&f, false);
        assert_same_tree(&mut g, &mirror, Path::new("/"));
        let m = g.lstat(Path::new("/var/small/3000")).unwrap();
        assert!(
            m.allocated < 64 * 1024,
            "{layout:?}: sparse file allocated {}",
            m.allocated
        );
        // Everything removed, the free space is back where it was.
        g.close().unwrap();
    }
}

fn open_err(img: &Path, writable: bool) -> Error {
    open_ufs(img, writable).unwrap_err()
}

#[test]
fn damaged_foreign_and_unclean_filesystems_give_typed_errors() {
    let f = fixture(Layout::Ufs1);
    let dir = f._dir.path();
    let copy = |name: &str| {
        let p = dir.join(name);
        fs::copy(&f.img, &p).unwrap();
        p
    };
    // The checker itself notices a fragment freed behind the inodes' back.
    let flipped = copy("flipped.img");
    {
        let mut fs_ = open_ufs(&flipped, false).unwrap();
        let free = fs_.free_ranges().unwrap();
        assert!(!free.is_empty());
    }
    let mut sb = vec![0u8; 2048];
    let file = fs::File::open(&flipped).unwrap();
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut sb, 8192).unwrap();
    let cblkno = u64::from(u32::from_le_bytes(sb[12..16].try_into().unwrap()));
    let fsize = u64::from(u32::from_le_bytes(sb[52..56].try_into().unwrap()));
    let mut cg = vec![0u8; 200];
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut cg, cblkno * fsize).unwrap();
    let freeoff = u64::from(u32::from_le_bytes(cg[96..100].try_into().unwrap()));
    let dblkno = u64::from(u32::from_le_bytes(sb[20..24].try_into().unwrap()));
    // The first data fragment of group 0 is the root directory's.
    let byte = cblkno * fsize + freeoff + dblkno / 8;
    let mut b = [0u8; 1];
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut b, byte).unwrap();
    snf_testkit::fixture::write_at(&flipped, byte, &[b[0] | 1 << (dblkno % 8)]);
    assert!(ufs::check(&flipped, 0).is_err());

    // A superblock with an impossible block size.
    let bad = copy("bad-sb.img");
    snf_testkit::fixture::write_at(&bad, 8192 + 48, &3000u32.to_le_bytes());
    let e = open_err(&bad, false);
    assert!(
        matches!(e, Error::Corrupt { .. }) && e.to_string().contains("block size"),
        "{e}"
    );
    // Cut short: the filesystem is larger than what holds it.
    let short = copy("short.img");
    fs::OpenOptions::new()
        .write(true)
        .open(&short)
        .unwrap()
        .set_len(20 << 20)
        .unwrap();
    let e = open_err(&short, false);
    assert!(
        matches!(e, Error::Corrupt { .. }) && e.to_string().contains("larger than"),
        "{e}"
    );
    // Not cleanly unmounted: read, never written.
    let unclean = copy("unclean.img");
    snf_testkit::fixture::write_at(&unclean, 8192 + 209, &[0]);
    let e = open_err(&unclean, true);
    assert!(e.to_string().contains("run fsck_ffs in the guest"), "{e}");
    open_ufs(&unclean, false).unwrap();

    // Snapshots: freed blocks would have to be copied into them first; read only.
    let snap = copy("snap.img");
    snf_testkit::fixture::write_at(&snap, 8192 + 1116, &5u32.to_le_bytes());
    let e = open_err(&snap, true);
    assert!(e.to_string().contains("snapshots"), "{e}");
    open_ufs(&snap, false).unwrap();

    // Big-endian (makefs -B be): refused, named.
    let be = dir.join("be.img");
    snf_testkit::fixture::run(
        std::process::Command::new("makefs")
            .args(["-t", "ffs", "-B", "be", "-s", "8m"])
            .arg(&be)
            .arg(dir.join("tree/etc")),
    );
    let e = open_err(&be, false);
    assert!(e.to_string().contains("big-endian"), "{e}");
}

/// The guest tree as Linux's UFS driver sees it in the libguestfs appliance, compared
/// with the host mirror.
fn assert_same_in_appliance(h: &mut libguestfs::Handle, host: &Path, guest: &Path) {
    let mut names: Vec<_> = fs::read_dir(host)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    let mut got: Vec<_> = h
        .readdir(guest)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .filter(|n| n != "." && n != "..")
        .collect();
    got.sort();
    assert_eq!(names, got, "{}", guest.display());
    for n in names {
        let hp = host.join(&n);
        let gp = guest.join(&n);
        let hm = fs::symlink_metadata(&hp).unwrap();
        let st = h.lstat(&gp).unwrap();
        assert_eq!(hm.mode(), st.mode, "{}", gp.display());
        assert_eq!(hm.nlink(), st.nlink, "{}", gp.display());
        if hm.is_dir() {
            assert_same_in_appliance(h, &hp, &gp);
        } else if hm.file_type().is_symlink() {
            assert_eq!(
                fs::read_link(&hp).unwrap().into_os_string(),
                h.readlink(&gp).unwrap()
            );
        } else if !hm.is_file() {
            // A device or FIFO: its type is in the mode compared above.
        } else {
            assert_eq!(hm.len(), st.size, "{}", gp.display());
            let want = fs::read(&hp).unwrap();
            let mut got = Vec::new();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = h.pread(&gp, got.len() as u64, &mut buf).unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            assert!(want == got, "{}: content differs", gp.display());
        }
    }
}

#[test]
fn linux_reads_the_changed_filesystems_like_the_host_mirror() {
    // One appliance for all the images (each start costs ~25 s under TCG).
    let fixtures: Vec<(Fixture, PathBuf, &str)> = [
        (Layout::Ufs1, 4096, 512, "44bsd"),
        (Layout::Ufs1, 16384, 2048, "44bsd"),
        (Layout::Ufs2FreeBsd, 4096, 512, "ufs2"),
    ]
    .into_iter()
    .map(|(layout, bsize, fsize, ufstype)| {
        let f = fixture_with(layout, bsize, fsize);
        let mirror = changed(&f);
        (f, mirror, ufstype)
    })
    .collect();
    let launch = |tcg: bool| -> libguestfs::Result<libguestfs::Handle> {
        let mut h = libguestfs::Handle::new()?;
        if tcg {
            h.set_backend_setting("force_tcg", "1")?;
        }
        for (f, _, _) in &fixtures {
            h.add_drive_raw(&f.img, true)?;
        }
        h.launch()?;
        Ok(h)
    };
    // KVM only where the tool itself would use it (a hung nested KVM never returns).
    let mut h = launch(!snf_guestfs::kvm::usable())
        .or_else(|_| launch(true))
        .unwrap();
    for (i, (_, mirror, ufstype)) in fixtures.iter().enumerate() {
        let dev = format!("/dev/sd{}", (b'a' + i as u8) as char);
        h.mount_options(&format!("ro,ufstype={ufstype}"), &dev, "/")
            .unwrap();
        assert_same_in_appliance(&mut h, mirror, Path::new("/"));
        h.umount("/").unwrap();
    }
    h.shutdown().unwrap();
}

#[test]
fn filling_the_filesystem_ends_in_no_space_and_stays_consistent() {
    let f = fixture(Layout::Ufs2FreeBsd);
    let before = ufs::check(&f.img, 0).unwrap();
    let mut g = open(&f, true);
    g.write(Path::new("/var/fill"), b"", NewNode::root(0o644))
        .unwrap();
    let chunk = vec![0x5Au8; 4 << 20];
    let mut at = 0u64;
    let e = loop {
        match g.write_at(Path::new("/var/fill"), at, &chunk) {
            Ok(()) => at += chunk.len() as u64,
            Err(e) => break e,
        }
        assert!(at < 256 << 20, "never ran out of space");
    };
    assert!(matches!(e, Error::NoSpace(_)), "{e}");
    assert_eq!(g.lstat(Path::new("/var/fill")).unwrap().size, at);
    g.close().unwrap();
    ufs::check(&f.img, 0).unwrap_or_else(|e| panic!("full: {e}"));
    let mut g = open(&f, true);
    g.unlink(Path::new("/var/fill")).unwrap();
    g.close().unwrap();
    let after = ufs::check(&f.img, 0).unwrap();
    assert_eq!(before.frags_free, after.frags_free);
}

#[test]
fn check_hashes_are_verified_and_kept() {
    let f = fixture(Layout::Ufs2FreeBsd);
    ufs::enable_check_hashes(&f.img);
    ufs::verify_check_hashes(&f.img).unwrap();
    let mirror = changed(&f);
    ufs::verify_check_hashes(&f.img).unwrap_or_else(|e| panic!("after the changes: {e}"));
    ufs::check(&f.img, 0).unwrap();
    let mut g = open(&f, false);
    assert_same_tree(&mut g, &mirror, Path::new("/"));
    let ino = g.lstat(Path::new("/etc/rc.conf")).unwrap().node;
    g.close().unwrap();

    // A stale inode hash is an error naming the inode.
    let mut fs_ = open_ufs(&f.img, false).unwrap();
    let pos = {
        use snf_guestfs::Filesystem;
        let m = fs_.metadata(ino).unwrap();
        assert_eq!(m.node, ino);
        fs_.inode_offset(ino)
    };
    drop(fs_);
    snf_testkit::fixture::write_at(&f.img, pos + 4, &[0xEE]);
    let mut g = open(&f, false);
    let e = g.read(Path::new("/etc/rc.conf")).unwrap_err();
    assert!(
        e.to_string()
            .contains(&format!("inode {ino}: check-hash mismatch")),
        "{e}"
    );
    // A stale superblock hash refuses the open.
    snf_testkit::fixture::write_at(&f.img, 65536 + 680, b"x");
    let e = open_err(&f.img, false);
    assert!(e.to_string().contains("check-hash mismatch"), "{e}");
}

#[test]
fn assembly_opens_ufs_in_process() {
    use snf_guestfs::assemble::{Backends, Opener, PartitionDesc};
    use snf_guestfs::probe::{probe_file, FsType};
    use snf_guestfs::FsKind;
    for (layout, ty, kind) in [
        (Layout::Ufs1, FsType::Ufs1, FsKind::Ufs1),
        (Layout::Ufs2FreeBsd, FsType::Ufs2, FsKind::Ufs2),
    ] {
        let f = fixture(layout);
        let size = fs::metadata(&f.img).unwrap().len();
        let probe = probe_file(&f.img, 0, size).unwrap();
        assert_eq!(probe.fs_type, ty);
        assert!(probe.fs_type.has_backend() && !probe.fs_type.needs_appliance());
        let part = PartitionDesc {
            number: 2,
            offset: 0,
            size,
            ..Default::default()
        };
        let fs = Backends.open(&f.img, &part, &probe, true).unwrap();
        assert_eq!(fs.kind(), kind);
        assert!(fs.is_writable());
        drop(fs);
        // Not clean: the error names the partition and says what to do.
        let at = if layout == Layout::Ufs1 { 8192 } else { 65536 };
        snf_testkit::fixture::write_at(&f.img, at + 209, &[0]);
        let e = Backends.open(&f.img, &part, &probe, true).err().unwrap();
        assert!(e.to_string().contains("run fsck_ffs in the guest"), "{e}");
        assert!(e.to_string().starts_with(&part.name()), "{e}");
    }
}

#[test]
fn other_block_and_fragment_sizes() {
    // FreeBSD's default 32 KiB / 4 KiB, and 16 KiB / 2 KiB.
    for (layout, bsize, fsize) in [
        (Layout::Ufs2NetBsd, 32768, 4096),
        (Layout::Ufs1, 16384, 2048),
    ] {
        let f = fixture_with(layout, bsize, fsize);
        ufs::check(&f.img, 0).unwrap_or_else(|e| panic!("{bsize}/{fsize} fresh: {e}"));
        let mirror = mirror(&f);
        let mut g = open(&f, true);
        assert_same_tree(&mut g, &f.tree, Path::new("/"));
        change_both(&mut g, &mirror);
        g.close().unwrap();
        ufs::check(&f.img, 0).unwrap_or_else(|e| panic!("{bsize}/{fsize} changed: {e}"));
        let mut g = open(&f, false);
        assert_same_tree(&mut g, &mirror, Path::new("/"));
    }
}
