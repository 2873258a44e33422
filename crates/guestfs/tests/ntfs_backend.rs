//! The NTFS backend on Windows-shaped volumes made by mkntfs and filled through a FUSE
//! ntfs-3g mount, read and changed through the guest tree, then checked with ntfsls,
//! ntfscat, ntfsinfo and ntfsfix on an extracted copy of the partition.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use snf_guestfs::assemble::{Backends, Opener, PartitionDesc};
use snf_guestfs::probe::{probe, FsType};
use snf_guestfs::{Error, FileType, FsKind, GuestFs, NewNode};
use snf_testkit::fixture::pseudo_random;
use snf_testkit::ntfs::{self, WindowsDisk, BIG_FILE_SEED, BIG_FILE_SIZE};

/// The `C:` partition opened the way assembly opens it: probed, then through
/// [`Backends`].
fn open_c(d: &WindowsDisk, writable: bool) -> snf_guestfs::Result<GuestFs> {
    let (offset, size) = d.c();
    let mut head = vec![0u8; 64 * 1024];
    File::open(d.path())
        .unwrap()
        .read_exact_at(&mut head, offset)
        .unwrap();
    let p = probe(&head);
    assert_eq!(p.fs_type, FsType::Ntfs);
    assert!(p.fs_type.has_backend() && p.fs_type.why_unchangeable().is_none());
    let part = PartitionDesc {
        number: 2,
        offset,
        size,
        ..Default::default()
    };
    let fs = Backends.open(d.path(), &part, &p, writable)?;
    assert_eq!(fs.kind(), FsKind::Ntfs);
    Ok(GuestFs::new(fs, "/dev/sda2"))
}

fn windows_disk(dir: &Path, gpt: bool, hibernated: bool) -> WindowsDisk {
    WindowsDisk::create(&dir.join("disk.img"), dir, gpt, hibernated)
}

#[test]
fn guest_paths_ignore_case_and_follow_junctions() {
    let dir = tempfile::tempdir().unwrap();
    let d = windows_disk(dir.path(), true, false);
    let mut g = open_c(&d, false).unwrap();
    let p = Path::new;
    assert_eq!(
        g.read(p("/windows/system32/CONFIG/software")).unwrap(),
        b"hive SOFTWARE"
    );
    assert_eq!(
        g.read(p("/WINDOWS/System32/config/SAM")).unwrap(),
        b"hive SAM"
    );
    let big = g.read(p("/program files/big/BIG.BIN")).unwrap();
    assert!(big.len() == BIG_FILE_SIZE && big == pseudo_random(BIG_FILE_SIZE, BIG_FILE_SEED));
    let mut root: Vec<_> = g
        .read_dir(p("/"))
        .unwrap()
        .into_iter()
        .map(|(n, t)| (n.into_string().unwrap(), t))
        .collect();
    root.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        root,
        [
            ("Documents and Settings".to_string(), FileType::Symlink),
            ("Program Files".to_string(), FileType::Directory),
            ("Users".to_string(), FileType::Directory),
            ("Windows".to_string(), FileType::Directory),
            ("pagefile.sys".to_string(), FileType::Regular),
        ]
    );
    // The junction to C:\Users and the Interix symlink resolve inside the guest.
    assert_eq!(g.read_link(p("/Documents and Settings")).unwrap(), "/Users");
    assert_eq!(
        g.read(p("/documents and settings/default/ntuser.dat"))
            .unwrap(),
        b"regf"
    );
    assert_eq!(
        g.read(p("/Windows/hosts-link")).unwrap(),
        b"127.0.0.1 localhost\r\n"
    );
    assert!(g.lstat(p("/Windows/hosts-link")).unwrap().is_symlink());
    assert!(g.stat(p("/Users")).unwrap().is_dir());
    assert!(!g.exists(p("/$MFT")));
    let e = g.read(p("/Windows/System32/compact.dll")).unwrap_err();
    assert!(matches!(e, Error::Unsupported { .. }), "{e}");
    assert!(e.to_string().contains("compressed"), "{e}");
    let e = g.write(p("/x"), b"x", NewNode::root(0o644)).unwrap_err();
    assert!(matches!(e, Error::ReadOnly(_)), "{e}");
}

#[test]
fn writes_through_the_guest_tree_are_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let d = windows_disk(dir.path(), false, false);
    let mut g = open_c(&d, true).unwrap();
    let p = Path::new;
    let attr = NewNode::root(0o644);
    g.mkdir_all(p("/windows/Setup/Scripts"), NewNode::root(0o755))
        .unwrap();
    g.write(
        p("/Windows/setup/scripts/SetupComplete.cmd"),
        b"@echo off\r\n",
        attr,
    )
    .unwrap();
    g.write(p("/WINDOWS/System32/config/software"), b"new hive", attr)
        .unwrap();
    g.unlink(p("/windows/system32/config/sam")).unwrap();
    g.remove_all(p("/Program Files/Big")).unwrap();
    g.rename(p("/Users/Public"), p("/Users/Shared")).unwrap();
    g.symlink("../Windows".as_ref(), p("/Users/win"), attr)
        .unwrap();
    assert_eq!(
        g.read(p("/users/WIN/setup/scripts/setupcomplete.cmd"))
            .unwrap(),
        b"@echo off\r\n"
    );
    g.close().unwrap();

    let (offset, size) = d.c();
    let part = dir.path().join("c.ntfs");
    ntfs::extract(d.path(), offset, size, &part);
    ntfs::assert_ntfsfix_clean(&part, "after writes through the guest tree");
    assert_eq!(
        ntfs::ntfscat(&part, "/Windows/Setup/Scripts/SetupComplete.cmd"),
        b"@echo off\r\n"
    );
    assert_eq!(
        ntfs::ntfscat(&part, "/Windows/System32/config/SOFTWARE"),
        b"new hive"
    );
    assert_eq!(
        ntfs::ntfsls(&part, "/Windows/System32/config"),
        ["SOFTWARE", "SYSTEM"]
    );
    assert_eq!(ntfs::ntfsls(&part, "/Program Files"), Vec::<String>::new());
    assert_eq!(ntfs::ntfsls(&part, "/Users"), ["Default", "Shared", "win"]);
    assert!(ntfs::ntfs_exists(
        &part,
        "/Users/Shared/Documents/A long file name with spaces.txt"
    ));
}

#[test]
fn hibernated_and_dirty_windows_are_refused_for_writing() {
    let dir = tempfile::tempdir().unwrap();
    let d = windows_disk(dir.path(), true, true);
    let Err(e) = open_c(&d, true) else {
        panic!("a hibernated volume opened writable")
    };
    let msg = e.to_string();
    assert!(
        msg.starts_with("partition 2: ")
            && msg.contains("hibernated")
            && msg.contains("fast startup"),
        "{msg}"
    );
    let mut g = open_c(&d, false).unwrap();
    assert!(g.exists(Path::new("/hiberfil.sys")));

    let d2 = WindowsDisk::create(&dir.path().join("dirty.img"), dir.path(), false, false);
    ntfs::set_dirty(d2.path(), d2.c().0);
    let Err(e) = open_c(&d2, true) else {
        panic!("a dirty volume opened writable")
    };
    assert!(e.to_string().contains("not shut down cleanly"), "{e}");
    let mut g = open_c(&d2, false).unwrap();
    assert_eq!(
        g.read(Path::new("/windows/system32/config/system"))
            .unwrap(),
        b"hive SYSTEM"
    );
}
