//! Image files need no root: the examine/snapshot/dump path runs as uid 65534 through
//! the `disk_dump` example binary.

mod disk_support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use disk_support::*;

/// The example binary, built if `cargo test` was asked for this test file only, copied
/// to `dir` so that uid 65534 can run it whatever the permissions of the target dir.
fn example_binary(dir: &Path) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let built = profile_dir.join("examples").join("disk_dump");
    if !built.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        run(Command::new(cargo).args(["build", "-p", "snf-disk", "--example", "disk_dump"]));
    }
    let copy = dir.join("disk_dump");
    std::fs::copy(&built, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    copy
}

fn as_nobody(exe: &Path, args: &[&std::ffi::OsStr]) -> String {
    require("setpriv");
    run(Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(exe)
        .args(args)
        .env("HOME", "/nonexistent"))
}

fn field(out: &str, key: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key} ")))
        .unwrap_or_else(|| panic!("no {key} in {out}"))
        .to_string()
}

fn own_workdirs_in_var_tmp() -> usize {
    std::fs::read_dir("/var/tmp")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(".snf_image_creator.")
                })
                .filter(|e| e.metadata().is_ok_and(|m| m.uid() == 65534))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn image_files_are_dumped_without_root() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let exe = example_binary(dir.path());
    let raw = raw_fixture(dir.path(), "disk.raw");
    let qcow = convert_to(&raw, dir.path(), "disk", "qcow2", "");
    for f in [&raw, &qcow] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    std::fs::set_permissions(&work, std::fs::Permissions::from_mode(0o777)).unwrap();
    let raw_sha = sha256(&raw);

    // Raw source, made writable (private copy) and modified, then dumped.
    let out = dir.path().join("raw-out.img");
    let stdout = as_nobody(
        &exe,
        &[
            raw.as_os_str(),
            out.as_os_str(),
            "--tmpdir".as_ref(),
            work.as_os_str(),
            "--write".as_ref(),
        ],
    );
    assert_eq!(field(&stdout, "copy"), "yes");
    assert_eq!(field(&stdout, "md5"), md5sum(&out));
    assert_eq!(std::fs::metadata(&out).unwrap().uid(), 65534);
    let mut expected = read_all(&raw);
    expected[0] ^= 0xff;
    assert!(read_all(&out) == expected, "dump of the modified copy");
    assert_eq!(sha256(&raw), raw_sha, "the source changed");
    for f in snf_disk::output_files(&out) {
        assert!(f.exists(), "{} missing", f.display());
    }
    assert_eq!(
        std::fs::read_dir(&work).unwrap().count(),
        0,
        "work dir left behind"
    );

    // qcow2 source (qemu-img conversion) with the default work directory.
    let before = own_workdirs_in_var_tmp();
    let out = dir.path().join("qcow-out.img");
    let stdout = as_nobody(&exe, &[qcow.as_os_str(), out.as_os_str()]);
    assert_eq!(field(&stdout, "copy"), "yes");
    assert_eq!(field(&stdout, "md5"), md5sum(&raw));
    assert!(read_all(&out) == read_all(&raw));
    assert_eq!(
        own_workdirs_in_var_tmp(),
        before,
        "work dir left in /var/tmp"
    );
}
