//! The guest tree over host-directory backends: path resolution stays inside the guest,
//! mounts are crossed, and every operation names the guest path on error.

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;

use snf_guestfs::{DirFs, Error, FileType, GuestFs, NewNode, SetAttr};

fn guest(root: &Path) -> GuestFs {
    GuestFs::new(Box::new(DirFs::open(root, true).unwrap()), "root")
}

fn p(s: &str) -> &Path {
    Path::new(s)
}

#[test]
fn absolute_symlinks_resolve_inside_the_guest() {
    let host = tempfile::tempdir().unwrap();
    let root = host.path().join("root");
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("etc/passwd"), "guest passwd\n").unwrap();
    // A link that, followed on the host, would reach the host's /etc/passwd.
    symlink("/etc/passwd", root.join("link")).unwrap();
    symlink("../../../../../../etc/passwd", root.join("etc/climb")).unwrap();
    let mut g = guest(&root);
    assert_eq!(g.read(p("/link")).unwrap(), b"guest passwd\n");
    assert_eq!(g.read(p("etc/climb")).unwrap(), b"guest passwd\n");
    assert_eq!(g.read(p("/../../etc/passwd")).unwrap(), b"guest passwd\n");
    assert_eq!(g.canonicalize(p("/etc/climb")).unwrap(), p("/etc/passwd"));
}

#[test]
fn symlink_loops_are_reported() {
    let host = tempfile::tempdir().unwrap();
    symlink("b", host.path().join("a")).unwrap();
    symlink("a", host.path().join("b")).unwrap();
    let mut g = guest(host.path());
    assert!(matches!(g.read(p("/a")), Err(Error::TooManySymlinks(_))));
    // lstat does not follow, and unlink removes the link itself.
    assert!(g.lstat(p("/a")).unwrap().is_symlink());
    g.unlink(p("/a")).unwrap();
    assert!(!g.lexists(p("/a")));
    assert!(g.lexists(p("/b")));
}

#[test]
fn errors_name_the_guest_path() {
    let host = tempfile::tempdir().unwrap();
    let mut g = guest(host.path());
    let err = g.read(p("/etc/shadow")).unwrap_err();
    assert!(err.is_not_found());
    assert_eq!(err.to_string(), "/etc/shadow: no such file or directory");
}

#[test]
fn mounts_are_crossed_in_both_directions() {
    let host = tempfile::tempdir().unwrap();
    let root = host.path().join("root");
    let boot = host.path().join("boot");
    fs::create_dir_all(root.join("boot")).unwrap();
    fs::write(root.join("boot/hidden"), "under the mount").unwrap();
    fs::create_dir_all(boot.join("grub")).unwrap();
    fs::write(boot.join("grub/grub.cfg"), "set timeout=5\n").unwrap();
    fs::create_dir_all(root.join("etc")).unwrap();
    symlink("/boot/grub/grub.cfg", root.join("etc/grub.cfg")).unwrap();
    let mut g = guest(&root);
    g.mount(
        p("/boot"),
        Box::new(DirFs::open(&boot, true).unwrap()),
        "boot",
    )
    .unwrap();
    assert_eq!(g.read(p("/etc/grub.cfg")).unwrap(), b"set timeout=5\n");
    assert_eq!(
        g.read(p("/boot/grub/../grub/grub.cfg")).unwrap(),
        b"set timeout=5\n"
    );
    assert!(!g.exists(p("/boot/hidden")));
    assert_eq!(
        g.read(p("/boot/../etc/grub.cfg")).unwrap(),
        b"set timeout=5\n"
    );
    let names: Vec<_> = g.read_dir(p("/boot")).unwrap();
    assert_eq!(names, vec![("grub".into(), FileType::Directory)]);
    // A walk descends into the mount and reports paths in guest terms.
    let walked: Vec<_> = g
        .walk(p("/"))
        .unwrap()
        .into_iter()
        .map(|e| e.path.to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        walked,
        [
            "/boot",
            "/boot/grub",
            "/boot/grub/grub.cfg",
            "/etc",
            "/etc/grub.cfg"
        ]
    );
    // Writing through the tree lands in the mounted filesystem.
    g.write(
        p("/boot/grub/grub.cfg"),
        b"set timeout=1\n",
        NewNode::root(0o644),
    )
    .unwrap();
    assert_eq!(
        fs::read(boot.join("grub/grub.cfg")).unwrap(),
        b"set timeout=1\n"
    );
    // Mount points cannot be removed or moved, but remove_all empties them.
    assert!(g.rmdir(p("/boot")).is_err());
    assert!(g.rename(p("/boot"), p("/boot2")).is_err());
    g.remove_all(p("/boot")).unwrap();
    assert!(g.read_dir(p("/boot")).unwrap().is_empty());
    assert!(root.join("boot/hidden").exists());
    // Renames across filesystems are refused.
    g.write(p("/etc/x"), b"x", NewNode::root(0o600)).unwrap();
    assert!(matches!(
        g.rename(p("/etc/x"), p("/boot/x")),
        Err(Error::CrossDevice(_))
    ));
}

#[test]
fn write_keeps_inode_owner_and_mode() {
    let host = tempfile::tempdir().unwrap();
    let f = host.path().join("f");
    fs::write(&f, "old content that is longer").unwrap();
    fs::set_permissions(&f, fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(&f, Some(12), Some(34)).unwrap();
    let ino = fs::metadata(&f).unwrap().ino();
    let mut g = guest(host.path());
    g.write(p("/f"), b"new", NewNode::root(0o600)).unwrap();
    let m = fs::metadata(&f).unwrap();
    assert_eq!(fs::read(&f).unwrap(), b"new");
    assert_eq!(
        (m.ino(), m.mode() & 0o7777, m.uid(), m.gid()),
        (ino, 0o640, 12, 34)
    );
    // A missing file is created with the attributes given.
    g.write(
        p("/g"),
        b"g",
        NewNode {
            mode: 0o600,
            uid: 5,
            gid: 6,
        },
    )
    .unwrap();
    let m = fs::metadata(host.path().join("g")).unwrap();
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o600, 5, 6));
}

#[test]
fn scrub_overwrites_data_and_keeps_holes() {
    let host = tempfile::tempdir().unwrap();
    let f = host.path().join("secret");
    let file = fs::File::create(&f).unwrap();
    use std::os::unix::fs::FileExt;
    file.write_all_at(b"TOP-SECRET", 0).unwrap();
    file.write_all_at(b"TOP-SECRET", 64 << 20).unwrap();
    drop(file);
    let mut g = guest(host.path());
    g.scrub_data(p("/secret")).unwrap();
    let m = fs::metadata(&f).unwrap();
    assert_eq!(m.len(), (64 << 20) + 10);
    assert!(
        m.blocks() * 512 < 4 << 20,
        "the hole was filled: {}",
        m.blocks()
    );
    assert!(fs::read(&f).unwrap().iter().all(|&b| b == 0));
    // Scrubbing never follows a symlink.
    symlink("/secret", host.path().join("link")).unwrap();
    assert!(g.scrub_data(p("/link")).is_err());
}

#[test]
fn remove_all_never_follows_symlinks() {
    let host = tempfile::tempdir().unwrap();
    let root = host.path().join("root");
    let keep = root.join("keep");
    fs::create_dir_all(&keep).unwrap();
    fs::write(keep.join("precious"), "x").unwrap();
    fs::create_dir_all(root.join("tmp/sub dir\nwith newline")).unwrap();
    fs::write(root.join("tmp/sub dir\nwith newline/f"), "f").unwrap();
    symlink("/keep", root.join("tmp/link-to-keep")).unwrap();
    symlink(&keep, root.join("tmp/host-link")).unwrap();
    let mut g = guest(&root);
    for (name, _) in g.read_dir(p("/tmp")).unwrap() {
        g.remove_all(&Path::new("/tmp").join(name)).unwrap();
    }
    assert!(g.read_dir(p("/tmp")).unwrap().is_empty());
    assert!(keep.join("precious").exists());
    g.remove_all(p("/does/not/exist")).unwrap();
}

#[test]
fn directories_files_and_attributes() {
    let host = tempfile::tempdir().unwrap();
    let mut g = guest(host.path());
    g.mkdir_all(p("/a/b/c"), NewNode::root(0o755)).unwrap();
    assert!(matches!(
        g.mkdir(p("/a/b"), NewNode::root(0o755)),
        Err(Error::AlreadyExists(_))
    ));
    g.write(p("/a/b/c/file"), b"0123456789", NewNode::root(0o644))
        .unwrap();
    g.truncate(p("/a/b/c/file"), 4).unwrap();
    assert_eq!(g.read(p("/a/b/c/file")).unwrap(), b"0123");
    g.symlink("c/file".as_ref(), p("/a/b/link"), NewNode::root(0o777))
        .unwrap();
    assert_eq!(g.read_link(p("/a/b/link")).unwrap(), "c/file");
    assert_eq!(g.read(p("/a/b/link")).unwrap(), b"0123");
    g.rename(p("/a/b"), p("/a/moved")).unwrap();
    assert_eq!(g.read(p("/a/moved/c/file")).unwrap(), b"0123");
    assert!(matches!(g.rmdir(p("/a/moved")), Err(Error::NotEmpty(_))));
    g.set_attr(
        p("/a/moved/c/file"),
        SetAttr {
            mode: Some(0o600),
            mtime: Some(1000),
            ..Default::default()
        },
    )
    .unwrap();
    let m = g.stat(p("/a/moved/link")).unwrap();
    assert_eq!((m.mode, m.mtime), (0o600, 1000));
    assert!(matches!(
        g.unlink(p("/a/moved")),
        Err(Error::IsADirectory(_))
    ));
    g.remove_all(p("/a")).unwrap();
    assert!(!g.lexists(p("/a")));
    assert!(matches!(g.read(p("/")), Err(Error::IsADirectory(_))));
}

#[test]
fn read_only_backends_refuse_writes() {
    let host = tempfile::tempdir().unwrap();
    let mut g = GuestFs::new(Box::new(DirFs::open(host.path(), false).unwrap()), "ro");
    let err = g.write(p("/x"), b"x", NewNode::root(0o644)).unwrap_err();
    assert!(matches!(err, Error::ReadOnly(_)), "{err}");
    assert!(!g.is_writable(p("/")).unwrap());
}

#[test]
fn partial_reads_and_writes_keep_the_rest_of_the_file() {
    let host = tempfile::tempdir().unwrap();
    fs::create_dir(host.path().join("etc")).unwrap();
    fs::write(host.path().join("etc/data"), "0123456789").unwrap();
    symlink("data", host.path().join("etc/link")).unwrap();
    let mut g = guest(host.path());
    let mut buf = [0u8; 4];
    assert_eq!(g.read_at(p("/etc/link"), 3, &mut buf).unwrap(), 4);
    assert_eq!(&buf, b"3456");
    assert_eq!(g.read_at(p("/etc/data"), 10, &mut buf).unwrap(), 0);
    g.write_at(p("/etc/data"), 8, b"ABCD").unwrap();
    assert_eq!(g.read(p("/etc/data")).unwrap(), b"01234567ABCD");
    assert!(matches!(
        g.write_at(p("/etc"), 0, b"x"),
        Err(Error::IsADirectory(_))
    ));
    let err = g.read_at(p("/etc/missing"), 0, &mut buf).unwrap_err();
    assert_eq!(err.to_string(), "/etc/missing: no such file or directory");
}

#[test]
fn create_file_is_exclusive_and_sets_owner_and_mode() {
    let host = tempfile::tempdir().unwrap();
    let mut g = guest(host.path());
    g.create_file(
        p("/new"),
        NewNode {
            mode: 0o640,
            uid: 7,
            gid: 8,
        },
    )
    .unwrap();
    let m = g.lstat(p("/new")).unwrap();
    assert_eq!((m.size, m.mode, m.uid, m.gid), (0, 0o640, 7, 8));
    assert!(matches!(
        g.create_file(p("/new"), NewNode::root(0o644)),
        Err(Error::AlreadyExists(_))
    ));
    assert!(g
        .create_file(p("/no/dir/f"), NewNode::root(0o644))
        .unwrap_err()
        .is_not_found());
}

#[test]
fn hard_links_share_data_and_stay_on_one_filesystem() {
    let host = tempfile::tempdir().unwrap();
    let root = host.path().join("root");
    let boot = host.path().join("boot");
    fs::create_dir_all(root.join("boot")).unwrap();
    fs::create_dir_all(&boot).unwrap();
    fs::write(root.join("a"), "shared").unwrap();
    let mut g = guest(&root);
    g.mount(
        p("/boot"),
        Box::new(DirFs::open(&boot, true).unwrap()),
        "boot",
    )
    .unwrap();
    g.hard_link(p("/a"), p("/b")).unwrap();
    assert_eq!(g.lstat(p("/a")).unwrap().nlink, 2);
    g.write_at(p("/b"), 0, b"SH").unwrap();
    assert_eq!(g.read(p("/a")).unwrap(), b"SHared");
    assert_eq!(
        fs::metadata(root.join("b")).unwrap().ino(),
        fs::metadata(root.join("a")).unwrap().ino()
    );
    assert!(matches!(
        g.hard_link(p("/a"), p("/b")),
        Err(Error::AlreadyExists(_))
    ));
    assert!(matches!(
        g.hard_link(p("/a"), p("/boot/a")),
        Err(Error::CrossDevice(_))
    ));
    assert!(matches!(
        g.hard_link(p("/boot"), p("/c")),
        Err(Error::IsADirectory(_))
    ));
}

/// An ext4 image of `tree` whose `/a/b/c/loop` is a second entry for directory `/a` (a
/// directory loop, as a corrupt or hostile filesystem can hold).
fn ext4_with_directory_loop(dir: &Path) -> std::path::PathBuf {
    use snf_testkit::fixture::{require, run, Mke2fs};
    let tree = dir.join("tree");
    fs::create_dir_all(tree.join("a/b/c")).unwrap();
    fs::write(tree.join("a/b/file"), "x").unwrap();
    let img = dir.join("loop.img");
    Mke2fs::ext4().tree(&tree).make(&img, 0, "8M");
    require("debugfs");
    run(std::process::Command::new("debugfs")
        .args(["-w", "-R", "link /a /a/b/c/loop"])
        .arg(&img));
    img
}

fn ext_guest(img: &Path, writable: bool) -> GuestFs {
    let fs = snf_guestfs::ExtFs::open(img, 0, writable).unwrap();
    GuestFs::new(Box::new(fs), "partition 1")
}

#[test]
fn walking_a_directory_loop_is_an_error_naming_it() {
    let host = tempfile::tempdir().unwrap();
    let img = ext4_with_directory_loop(host.path());
    let mut g = ext_guest(&img, false);
    let err = g.walk(p("/")).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.starts_with("/a/b/c/loop: "), "{msg}");
    assert!(
        msg.contains("directory loop") && msg.contains("/a"),
        "{msg}"
    );
    // Paths through the loop still resolve: resolution is bounded by the path itself.
    assert!(g.is_file(p("/a/b/c/loop/b/c/loop/b/file")));
}

#[test]
fn removing_a_directory_loop_is_an_error_not_a_stack_overflow() {
    let host = tempfile::tempdir().unwrap();
    let img = ext4_with_directory_loop(host.path());
    let mut g = ext_guest(&img, true);
    let err = g.remove_all(p("/a")).unwrap_err();
    assert!(err.to_string().contains("directory loop"), "{err}");
}

#[test]
fn walks_stop_at_the_depth_limit() {
    use snf_guestfs::tree::MAX_DEPTH;
    let host = tempfile::tempdir().unwrap();
    // Built one level at a time, relative to the last one: a path this deep is longer
    // than PATH_MAX.
    use rustix::fs::{mkdirat, openat, Mode, OFlags};
    let mut dir = openat(
        rustix::fs::CWD,
        host.path(),
        OFlags::DIRECTORY,
        Mode::empty(),
    )
    .unwrap();
    for _ in 0..MAX_DEPTH + 1 {
        mkdirat(&dir, "d", Mode::from_raw_mode(0o755)).unwrap();
        dir = openat(&dir, "d", OFlags::DIRECTORY, Mode::empty()).unwrap();
    }
    let mut g = guest(host.path());
    let err = g.walk(p("/")).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("nested more than"), "{err}");
    let err = g.remove_all(p("/d")).unwrap_err();
    assert!(err.to_string().contains("nested more than"), "{err}");
}

#[test]
fn a_file_claiming_a_huge_size_is_not_read_whole() {
    use snf_guestfs::tree::MAX_READ;
    let host = tempfile::tempdir().unwrap();
    let tree = host.path().join("tree");
    fs::create_dir_all(tree.join("etc")).unwrap();
    // Sparse: 1 GiB of size, no data blocks in the image.
    fs::File::create(tree.join("etc/fstab"))
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let img = host.path().join("huge.img");
    snf_testkit::fixture::Mke2fs::ext4()
        .tree(&tree)
        .make(&img, 0, "16M");
    let mut g = ext_guest(&img, false);
    let err = g.read(p("/etc/fstab")).unwrap_err();
    assert!(
        matches!(err, Error::TooLarge { size, limit, .. } if size == 1 << 30 && limit == MAX_READ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "/etc/fstab: 1073741824 bytes, larger than the 64 MiB limit for a file read whole"
    );
    // Partial reads still work.
    let mut buf = [1u8; 16];
    assert_eq!(g.read_at(p("/etc/fstab"), 0, &mut buf).unwrap(), 16);
    assert_eq!(buf, [0u8; 16]);
}
