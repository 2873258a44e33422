//! The host-directory backend never leaves its root through a host symlink, never
//! changes anything through one, and gives objects on different filesystems different ids.

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use snf_guestfs::{DirFs, Error, FileType, Filesystem, GuestFs, NewNode, SetAttr};

/// A host directory holding `root` (the tree served) and `outside/marker`, which no
/// operation on the tree may read or change.
struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new() -> Host {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("root/etc")).unwrap();
        fs::create_dir(dir.path().join("outside")).unwrap();
        fs::write(dir.path().join("outside/marker"), "host secret\n").unwrap();
        fs::set_permissions(
            dir.path().join("outside/marker"),
            fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        Host { dir }
    }

    fn root(&self) -> std::path::PathBuf {
        self.dir.path().join("root")
    }

    fn marker(&self) -> std::path::PathBuf {
        self.dir.path().join("outside/marker")
    }

    /// The marker is as it was made.
    fn assert_marker_untouched(&self) {
        let m = fs::metadata(self.marker()).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o600, "the marker's mode changed");
        assert_eq!((m.uid(), m.gid()), (0, 0), "the marker's owner changed");
        assert_eq!(fs::read(self.marker()).unwrap(), b"host secret\n");
    }
}

fn p(s: &str) -> &Path {
    Path::new(s)
}

#[test]
fn symlinks_to_the_host_are_never_followed_by_the_backend() {
    let host = Host::new();
    let root = host.root();
    symlink(host.marker(), root.join("abs")).unwrap();
    symlink("../outside/marker", root.join("rel")).unwrap();
    symlink(host.dir.path().join("outside"), root.join("dirlink")).unwrap();
    let mut fs = DirFs::open(&root, true).unwrap();
    let top = fs.root();
    for name in ["abs", "rel"] {
        let node = fs.lookup(top, name.as_ref()).unwrap().unwrap();
        assert_eq!(fs.metadata(node).unwrap().file_type, FileType::Symlink);
        let mut buf = [0u8; 64];
        assert!(fs.read_at(node, 0, &mut buf).is_err(), "{name} was read");
        assert!(
            fs.write_at(node, 0, b"pwned").is_err(),
            "{name} was written"
        );
        assert!(fs.set_len(node, 0).is_err(), "{name} was truncated");
        let err = fs
            .set_attr(
                node,
                SetAttr {
                    mode: Some(0o777),
                    ..Default::default()
                },
            )
            .unwrap_err();
        assert!(matches!(err, Error::Unsupported { .. }), "{err}");
        // Owner and times change on the link itself.
        fs.set_attr(
            node,
            SetAttr {
                uid: Some(1234),
                gid: Some(1234),
                mtime: Some(1_000_000_000),
                ..Default::default()
            },
        )
        .unwrap();
        let link = fs::symlink_metadata(root.join(name)).unwrap();
        assert_eq!((link.uid(), link.mtime()), (1234, 1_000_000_000));
    }
    // A symlinked directory is not a directory of the tree: nothing is listed or created
    // through it.
    let dl = fs.lookup(top, "dirlink".as_ref()).unwrap().unwrap();
    assert!(fs.read_dir(dl).is_err());
    assert!(fs.lookup(dl, "marker".as_ref()).is_err());
    assert!(fs
        .create_file(dl, "new".as_ref(), NewNode::root(0o644))
        .is_err());
    assert!(fs.mkdir(dl, "new".as_ref(), NewNode::root(0o755)).is_err());
    assert!(!host.dir.path().join("outside/new").exists());
    host.assert_marker_untouched();
}

#[test]
fn guest_paths_through_host_symlinks_stay_inside_the_root() {
    let host = Host::new();
    let root = host.root();
    fs::write(root.join("etc/marker"), "guest\n").unwrap();
    symlink(host.marker(), root.join("abs")).unwrap();
    symlink("../outside/marker", root.join("rel")).unwrap();
    symlink(host.dir.path().join("outside"), root.join("dirlink")).unwrap();
    let mut g = GuestFs::new(Box::new(DirFs::open(&root, true).unwrap()), "root");
    // Resolved inside the guest: none of these is the host marker.
    assert!(g.read(p("/rel")).unwrap_err().is_not_found());
    assert!(g.read(p("/dirlink/marker")).unwrap_err().is_not_found());
    let attr = SetAttr {
        mode: Some(0o666),
        ..Default::default()
    };
    assert!(g.set_attr(p("/abs"), attr).is_err());
    assert!(g.set_attr(p("/dirlink/marker"), attr).is_err());
    g.write(p("/abs"), b"written", NewNode::root(0o644))
        .unwrap_err();
    g.scrub_data(p("/abs")).unwrap_err();
    g.remove_all(p("/dirlink")).unwrap();
    assert!(host.dir.path().join("outside").is_dir());
    host.assert_marker_untouched();
}

#[test]
fn a_directory_replaced_by_a_symlink_is_not_entered() {
    let host = Host::new();
    let root = host.root();
    fs::create_dir(root.join("d")).unwrap();
    fs::write(root.join("d/marker"), "guest\n").unwrap();
    let mut fs_ = DirFs::open(&root, true).unwrap();
    let top = fs_.root();
    let d = fs_.lookup(top, "d".as_ref()).unwrap().unwrap();
    let m = fs_.lookup(d, "marker".as_ref()).unwrap().unwrap();
    // Swap the directory for a symlink to the host behind the backend's back.
    fs::rename(root.join("d"), root.join("d.old")).unwrap();
    symlink(host.dir.path().join("outside"), root.join("d")).unwrap();
    // Fresh handles: the cached one would still be the old directory.
    let mut fs_ = DirFs::open(&root, true).unwrap();
    let d2 = fs_.lookup(top, "d".as_ref()).unwrap().unwrap();
    assert!(fs_.read_dir(d2).is_err());
    assert!(fs_.lookup(d2, "marker".as_ref()).is_err());
    let _ = (d, m);
    host.assert_marker_untouched();
}

#[test]
fn new_objects_get_the_mode_and_owner_asked_for() {
    let host = Host::new();
    let mut g = GuestFs::new(Box::new(DirFs::open(&host.root(), true).unwrap()), "root");
    let attr = NewNode {
        mode: 0o4750,
        uid: 42,
        gid: 43,
    };
    g.write(p("/etc/new"), b"x", attr).unwrap();
    g.mkdir(
        p("/etc/dir"),
        NewNode {
            mode: 0o1777,
            ..attr
        },
    )
    .unwrap();
    g.symlink("target".as_ref(), p("/etc/link"), attr).unwrap();
    let m = fs::symlink_metadata(host.root().join("etc/new")).unwrap();
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o4750, 42, 43));
    let m = fs::symlink_metadata(host.root().join("etc/dir")).unwrap();
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o1777, 42, 43));
    let m = fs::symlink_metadata(host.root().join("etc/link")).unwrap();
    assert_eq!((m.uid(), m.gid()), (42, 43));
    // Renaming keeps ids and what lies below a moved directory.
    g.write(p("/etc/dir/inner"), b"in", NewNode::root(0o644))
        .unwrap();
    g.rename(p("/etc/dir"), p("/moved")).unwrap();
    assert_eq!(g.read(p("/moved/inner")).unwrap(), b"in");
    assert!(g.lstat(p("/etc/dir")).unwrap_err().is_not_found());
}

#[test]
fn objects_on_different_filesystems_get_different_ids() {
    let host = Host::new();
    let root = host.root();
    let mnt = root.join("mnt");
    fs::create_dir(&mnt).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(st.success(), "mount tmpfs (the test needs root)");
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _guard = Unmount(&mnt);
    // Make an inode number that exists on both filesystems: tmpfs numbers from small
    // values, so a file and a directory with equal inode numbers are likely; compare
    // every pair instead of hoping.
    for i in 0..20 {
        fs::write(mnt.join(format!("f{i}")), "tmpfs").unwrap();
        fs::write(root.join(format!("g{i}")), "root").unwrap();
    }
    let mut fs_ = DirFs::open(&root, false).unwrap();
    let mut g = GuestFs::new(Box::new(DirFs::open(&root, false).unwrap()), "root");
    let all = g.walk(p("/")).unwrap();
    let mut by_id = std::collections::HashMap::new();
    for e in &all {
        let host_meta = fs::symlink_metadata(root.join(e.path.strip_prefix("/").unwrap())).unwrap();
        let k = (host_meta.dev(), host_meta.ino());
        if let Some(old) = by_id.insert(e.metadata.node, (k, e.path.clone())) {
            assert_eq!(
                old.0,
                k,
                "{} and {} share an id",
                old.1.display(),
                e.path.display()
            );
        }
    }
    // The mount point shows the mounted root, with its own id.
    let top = fs_.root();
    let m = fs_.lookup(top, "mnt".as_ref()).unwrap().unwrap();
    assert_ne!(m, top);
    let listed = fs_.read_dir(top).unwrap();
    let entry = listed.iter().find(|e| e.name == "mnt").unwrap();
    assert_eq!(entry.node, m);
    assert_eq!(
        fs_.metadata(m).unwrap().nlink,
        fs::metadata(&mnt).unwrap().nlink() as u32
    );
}

#[test]
fn a_bind_mount_of_an_ancestor_is_a_loop_for_walks() {
    let host = Host::new();
    let root = host.root();
    let inner = root.join("a/b");
    fs::create_dir_all(&inner).unwrap();
    let st = Command::new("mount")
        .args(["--bind"])
        .arg(&root)
        .arg(&inner)
        .status()
        .unwrap();
    assert!(st.success(), "bind mount (the test needs root)");
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _guard = Unmount(&inner);
    let mut g = GuestFs::new(Box::new(DirFs::open(&root, false).unwrap()), "root");
    let err = g.walk(p("/")).unwrap_err();
    assert!(err.to_string().starts_with("/a/b: "), "{err}");
    assert!(err.to_string().contains("directory loop"), "{err}");
}
