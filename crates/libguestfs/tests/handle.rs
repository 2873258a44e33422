//! The binding against a real appliance: an xfs filesystem made by mkfs.xfs, written
//! and read back through libguestfs, and the appliance gone after the handle.

use std::path::Path;
use std::process::Command;

use libguestfs::Handle;

fn qemu_running_on(image: &Path) -> bool {
    let out = Command::new("pgrep")
        .args(["-f", &image.display().to_string()])
        .output()
        .expect("pgrep (procps)");
    !out.stdout.is_empty()
}

#[test]
fn xfs_written_and_read_back_then_appliance_gone() {
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("xfs.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(300 << 20)
        .unwrap();
    let st = Command::new("mkfs.xfs")
        .args(["-q", "-f"])
        .arg(&img)
        .status()
        .expect("mkfs.xfs (xfsprogs)");
    assert!(st.success());

    let mut g = Handle::new().unwrap();
    g.set_memsize(512).unwrap();
    // Nested KVM aborts on the CI host (docs ecosystem §A.1.4): the fallback to TCG is
    // the appliance backend's business, not the binding's.
    g.set_backend_setting("force_tcg", "1").unwrap();
    g.add_drive_raw(&img, false).unwrap();
    g.launch().unwrap();
    assert!(qemu_running_on(&img), "the appliance runs on the image");
    g.mkmountpoint("/m").unwrap();
    g.mount_options("", "/dev/sda", "/m").unwrap();
    let f = Path::new("/m/hello");
    g.touch(f).unwrap();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    g.pwrite_all(f, 0, &data).unwrap();
    g.chmod(f, 0o640).unwrap();
    g.lchown(f, 12, 34).unwrap();
    g.mkdir(Path::new("/m/dir"), 0o700).unwrap();
    g.symlink("hello".as_ref(), Path::new("/m/dir/link"))
        .unwrap();
    let st = g.lstat(f).unwrap();
    assert_eq!(
        (st.size, st.mode & 0o7777, st.uid, st.gid),
        (3_000_000, 0o640, 12, 34)
    );
    let mut back = vec![0u8; data.len()];
    let mut off = 0;
    while off < back.len() {
        let n = g.pread(f, off as u64, &mut back[off..]).unwrap();
        assert!(n > 0);
        off += n;
    }
    assert_eq!(back, data);
    let names: Vec<_> = g
        .readdir(Path::new("/m"))
        .unwrap()
        .into_iter()
        .map(|e| (e.name.into_string().unwrap(), e.kind))
        .collect();
    assert!(names.contains(&("hello".into(), b'r')), "{names:?}");
    assert!(names.contains(&("dir".into(), b'd')), "{names:?}");
    assert_eq!(g.readlink(Path::new("/m/dir/link")).unwrap(), "hello");
    let e = g.lstat(Path::new("/m/nothing")).unwrap_err();
    assert_eq!(e.errno, 2, "{e}");
    assert!(e.to_string().contains("/m/nothing"), "{e}");
    g.rename(f, Path::new("/m/dir/moved")).unwrap();
    g.rm(Path::new("/m/dir/link")).unwrap();
    g.shutdown().unwrap();
    drop(g);
    assert!(!qemu_running_on(&img), "no appliance left");

    // Read back independently: xfs_db sees the moved file's size, and xfs_repair -n
    // finds nothing to fix.
    let out = Command::new("xfs_db")
        .args(["-r", "-c", "path /dir/moved", "-c", "print core.size"])
        .arg(&img)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("core.size = 3000000"), "{text}");
    let st = Command::new("xfs_repair")
        .args(["-n"])
        .arg(&img)
        .status()
        .unwrap();
    assert!(st.success());
}
