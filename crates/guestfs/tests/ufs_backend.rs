//! The in-process UFS backend on images made by NetBSD's `makefs` (UFS1, UFS2 where
//! makefs puts it, UFS2 where FreeBSD puts it): every read against the source tree, and
//! every write checked by an fsck-like recount independent of the backend
//! (`snf_testkit::ufs::check`).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use snf_guestfs::{Error, GuestFs, NewNode, UfsFs};
use snf_testkit::ufs::{self, Layout};

const LAYOUTS: [Layout; 3] = [Layout::Ufs1, Layout::Ufs2NetBsd, Layout::Ufs2FreeBsd];

struct Fixture {
    _dir: tempfile::TempDir,
    tree: PathBuf,
    img: PathBuf,
}

fn fixture(layout: Layout) -> Fixture {
    let dir = tempfile::Builder::new()
        .prefix("ufs-backend.")
        .tempdir_in(snf_testkit::target_dir())
        .unwrap();
    let tree = dir.path().join("tree");
    ufs::sample_tree(&tree);
    let img = dir.path().join("ufs.img");
    ufs::make_image(&img, &tree, layout, 128);
    Fixture {
        _dir: dir,
        tree,
        img,
    }
}

fn open(f: &Fixture, writable: bool) -> GuestFs {
    let size = fs::metadata(&f.img).unwrap().len();
    GuestFs::new(
        Box::new(UfsFs::open(&f.img, 0, size, writable).unwrap()),
        "ufs",
    )
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
