//! Inputs the fuzz targets (fuzz/, scripts/fuzz.sh) found to break system preparation
//! or inspection, replayed on a guest tree served by the directory backend.

use std::path::{Path, PathBuf};

use image_creator::metadata::Metadata;
use image_creator::sysprep::{
    self, GuestOs, MountedFs, OsFamily, Params, Registry, SysprepContext,
};
use snf_guestfs::{DirFs, GuestFs};
use snf_testkit::fixture::write_file;
use snf_testkit::report::Recorder;

const ROOT_UUID: &str = "0f3c9e2a-6b1d-4c55-9a7e-2d1f00c0ffee";

/// Runs the one operation `op` of the Linux family on the tree at `root`.
fn run_op(root: &Path, op: &str) {
    let mut g = GuestFs::new(Box::new(DirFs::open(root, true).unwrap()), "tree");
    let mut meta = Metadata::new();
    meta.insert("OSFAMILY", "linux").unwrap();
    let os = GuestOs::from_metadata(&meta);
    let params = Params::for_family(OsFamily::Linux);
    let mut registry = Registry::for_family(OsFamily::Linux);
    registry.disable_all();
    registry.enable(op).unwrap();
    let rec = Recorder::default();
    let mut ctx =
        SysprepContext::new(&mut g, &os, &mut meta, &params, &rec).with_filesystems(vec![
            MountedFs {
                mountpoint: PathBuf::from("/"),
                uuid: Some(ROOT_UUID.into()),
            },
        ]);
    sysprep::run_enabled(&mut registry, &mut ctx).unwrap();
}

/// A syslinux line whose sixth byte falls inside a multi-byte character panicked the
/// `APPEND` test (a byte slice of the line).
#[test]
fn persistent_names_survive_multibyte_syslinux_lines() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_file(root, "/etc/fstab", "/dev/sda1 / ext4 defaults 0 1\n");
    write_file(
        root,
        "/boot/syslinux/syslinux.cfg",
        "DEF\u{aa}\u{b3}\u{ab} linux\nLABEL linux\n  APPEND root=/dev/sda1 ro\n",
    );
    run_op(root, "use-persistent-block-device-names");
    let cfg = std::fs::read_to_string(root.join("boot/syslinux/syslinux.cfg")).unwrap();
    assert_eq!(
        cfg,
        format!("DEF\u{aa}\u{b3}\u{ab} linux\nLABEL linux\n  APPEND root=UUID={ROOT_UUID} ro\n")
    );
}
