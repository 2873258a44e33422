//! The appliance backend through the guest tree on a real xfs filesystem (mkfs.xfs):
//! every kind of change, including node ids that must follow a renamed directory, read
//! back by the host kernel (a read-only loop mount) and `xfs_repair -n`. One appliance
//! for the whole binary (it costs ~20 s under TCG).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use snf_guestfs::appliance::{ApplianceFs, Hold};
use snf_guestfs::{Error, FsKind, GuestFs, NewNode, SetAttr};
use snf_testkit::fixture::{require, run, sparse_file};

const MIB: u64 = 1 << 20;

#[test]
fn every_change_through_the_appliance_reads_back_on_the_host() {
    require("mkfs.xfs");
    let d = tempfile::Builder::new()
        .prefix("appliance-backend.")
        .tempdir_in(snf_testkit::target_dir())
        .unwrap();
    let img = d.path().join("xfs.img");
    sparse_file(&img, 320 * MIB);
    run(Command::new("mkfs.xfs").args(["-q", "-f"]).arg(&img));

    // The hold keeps the appliance up between the two opens, as assembly does.
    let hold = Hold::new(&img);
    // Read-only first: writes are refused without reaching the appliance.
    let first = {
        let fs = ApplianceFs::open(&img, 0, 320 * MIB, FsKind::Xfs, "", false).unwrap();
        let app = std::sync::Arc::downgrade(fs.appliance());
        let mut g = GuestFs::new(Box::new(fs), "xfs");
        let e = g
            .write(Path::new("/x"), b"no", NewNode::root(0o644))
            .unwrap_err();
        assert!(matches!(e, Error::ReadOnly(_)), "{e}");
        g.close().unwrap();
        app
    };

    let fs = ApplianceFs::open(&img, 0, 320 * MIB, FsKind::Xfs, "", true).unwrap();
    assert!(
        std::sync::Arc::ptr_eq(&first.upgrade().unwrap(), fs.appliance()),
        "a second appliance was launched"
    );
    let mut g = GuestFs::new(Box::new(fs), "xfs");
    let attr = NewNode {
        mode: 0o640,
        uid: 1000,
        gid: 100,
    };
    g.mkdir_all(Path::new("/a/b"), NewNode::root(0o755))
        .unwrap();
    g.write(Path::new("/a/b/f"), b"first", attr).unwrap();
    let big: Vec<u8> = (0..(3 * MIB as u32)).map(|i| (i % 253) as u8).collect();
    g.write(Path::new("/a/big"), &big, NewNode::root(0o600))
        .unwrap();
    g.symlink("b/f".as_ref(), Path::new("/a/link"), NewNode::root(0o777))
        .unwrap();
    g.hard_link(Path::new("/a/b/f"), Path::new("/hard"))
        .unwrap();
    // Looked up before the move: the tree's ids must follow it.
    assert_eq!(g.read(Path::new("/a/b/f")).unwrap(), b"first");
    g.rename(Path::new("/a"), Path::new("/moved")).unwrap();
    assert!(!g.exists(Path::new("/a")));
    assert_eq!(g.read(Path::new("/moved/b/f")).unwrap(), b"first");
    assert_eq!(g.read(Path::new("/moved/link")).unwrap(), b"first");
    g.write_at(Path::new("/moved/b/f"), 5, b"+second").unwrap();
    g.truncate(Path::new("/moved/big"), MIB).unwrap();
    g.set_attr(
        Path::new("/moved/b/f"),
        SetAttr {
            mode: Some(0o600),
            mtime: Some(1_000_000_000),
            ..Default::default()
        },
    )
    .unwrap();
    g.mkdir(Path::new("/gone"), NewNode::root(0o755)).unwrap();
    g.write(Path::new("/gone/x"), b"x", NewNode::root(0o644))
        .unwrap();
    g.remove_all(Path::new("/gone")).unwrap();
    let e = g.rmdir(Path::new("/moved")).unwrap_err();
    assert!(matches!(e, Error::NotEmpty(_)), "{e}");
    let e = g.read(Path::new("/nothing")).unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(e.to_string().contains("/nothing"), "{e}");
    let meta = g.lstat(Path::new("/moved/b/f")).unwrap();
    assert_eq!(
        (meta.size, meta.mode, meta.uid, meta.gid),
        (12, 0o600, 1000, 100)
    );
    g.close().unwrap();
    drop(hold);
    assert!(
        first.upgrade().is_none(),
        "the appliance outlived its last user"
    );
    let ps = run(Command::new("ps").args(["-eo", "args"]));
    assert!(
        !ps.lines()
            .any(|l| l.contains("qemu") && l.contains(&*img.to_string_lossy())),
        "a qemu still runs on the image"
    );

    run(Command::new("xfs_repair").arg("-n").arg(&img));
    let m = d.path().join("m");
    fs::create_dir(&m).unwrap();
    run(Command::new("mount")
        .args(["-o", "ro,loop,norecovery"])
        .arg(&img)
        .arg(&m));
    let check = || {
        let f = m.join("moved/b/f");
        assert_eq!(fs::read(&f).unwrap(), b"first+second");
        let md = fs::metadata(&f).unwrap();
        assert_eq!(
            (
                md.mode() & 0o7777,
                md.uid(),
                md.gid(),
                md.mtime(),
                md.nlink()
            ),
            (0o600, 1000, 100, 1_000_000_000, 2)
        );
        assert_eq!(
            fs::read_link(m.join("moved/link")).unwrap(),
            Path::new("b/f")
        );
        assert_eq!(fs::read(m.join("moved/big")).unwrap(), &big[..MIB as usize]);
        assert_eq!(fs::read(m.join("hard")).unwrap(), b"first+second");
        assert!(!m.join("gone").exists() && !m.join("a").exists());
    };
    let r = std::panic::catch_unwind(check);
    run(Command::new("umount").arg(&m));
    r.unwrap();
}
