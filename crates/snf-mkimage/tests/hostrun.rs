//! `--host-run`: scripts run in the guest tree (mounted through FUSE) before the system
//! preparation, with the metadata in their environment; a failing one stops the run.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::*;
use snf_testkit::fixture::{example_disk, mounts_under};

fn example(dir: &Path) -> PathBuf {
    let img = dir.join("example.raw");
    example_disk(&img);
    img
}

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, format!("#!/bin/sh\nset -e\n{body}\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// `snf-mkimage ARGS` with its own system temp dir `systmp` (where the FUSE mount point
/// of --host-run goes), so that tests running at the same time do not see each other's
/// mounts.
fn run_in(systmp: &Path, args: &[&str]) -> std::process::Output {
    fs::create_dir_all(systmp).unwrap();
    std::process::Command::new(bin())
        .args(args)
        .env("TMPDIR", systmp)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("cannot run snf-mkimage")
}

/// Nothing of a run is left in `systmp`: no mount, no mount point.
fn assert_released(systmp: &Path) {
    assert_eq!(mounts_under(systmp), [], "a FUSE mount was left behind");
    assert!(entries(systmp).is_empty(), "{:?}", entries(systmp));
}

#[test]
fn scripts_edit_the_guest_before_the_system_preparation() {
    let dir = tempdir();
    let d = dir.path();
    let src = example(d);
    let before = sha256(&src);
    let systmp = d.join("systmp");
    let edit = script(
        d,
        "edit.sh",
        "printf '%s %s' \"$SNF_IMAGE_CREATOR_METADATA_OS\" \"$#\" > etc/from-host-run\n\
         echo 'more dirt' > var/log/host-run.log\n\
         rm -rf home/user/.ssh",
    );
    let out = d.join("out.raw");
    let tmp = d.join("tmp");
    fs::create_dir(&tmp).unwrap();
    let run1 = run_in(
        &systmp,
        &[
            "--host-run",
            edit.to_str().unwrap(),
            "--tmpdir",
            tmp.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            src.to_str().unwrap(),
        ],
    );
    assert!(run1.status.success(), "{}", stderr(&run1));
    assert!(stderr(&run1).contains("Running `"), "{}", stderr(&run1));
    let file = snf_testkit::guest_file(&out, 1, "/etc/from-host-run").unwrap();
    assert_eq!(file.as_deref(), Some(&b"debian 0"[..]));
    // The log it wrote was emptied by cleanup-log, which runs after it.
    let log = snf_testkit::guest_file(&out, 1, "/var/log/host-run.log").unwrap();
    assert_eq!(log.as_deref(), Some(&b""[..]));
    assert_eq!(
        snf_testkit::guest_file(&out, 1, "/home/user/.ssh/authorized_keys").unwrap(),
        None
    );
    assert_eq!(sha256(&src), before, "the source is untouched");
    assert_released(&systmp);
    assert!(entries(&tmp).is_empty(), "{:?}", entries(&tmp));
}

#[test]
fn a_failing_script_stops_the_run_and_releases_the_mount() {
    let dir = tempdir();
    let d = dir.path();
    let src = example(d);
    let before = sha256(&src);
    let systmp = d.join("systmp");
    let fail = script(d, "fail.sh", "touch etc/half-done\nexit 3");
    let out = d.join("out.raw");
    let tmp = d.join("tmp");
    fs::create_dir(&tmp).unwrap();
    let res = run_in(
        &systmp,
        &[
            "--host-run",
            fail.to_str().unwrap(),
            "--tmpdir",
            tmp.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            src.to_str().unwrap(),
        ],
    );
    assert_eq!(res.status.code(), Some(1), "{}", stderr(&res));
    let err = stderr(&res);
    assert!(
        err.contains(&format!(
            "Error: Script: `{}' failed (rc=3)",
            fail.display()
        )),
        "{err}"
    );
    assert!(!out.exists());
    assert_eq!(sha256(&src), before);
    assert_released(&systmp);
    assert!(entries(&tmp).is_empty(), "{:?}", entries(&tmp));

    // A script that cannot be run is refused before any work.
    let not_exec = d.join("plain.sh");
    fs::write(&not_exec, "#!/bin/sh\n").unwrap();
    let res = run(&[
        "--host-run",
        not_exec.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        src.to_str().unwrap(),
    ]);
    assert_eq!(res.status.code(), Some(1));
    assert!(
        stderr(&res).contains("is not an executable file"),
        "{}",
        stderr(&res)
    );
}
