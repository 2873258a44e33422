//! `--host-run` and Ctrl-C: cancelling while a script runs kills the script and all it
//! started, unmounts the guest tree and removes the mount point. Its own test binary
//! because the cancellation flag is process-wide.
//!
//! Needs `/dev/fuse` and root (or `fusermount3`, package fuse3).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use image_creator::hostrun::{self, HostRunError};
use image_creator::metadata::Metadata;
use snf_core::report::Quiet;
use snf_guestfs::{DirFs, GuestFs};
use snf_testkit::fixture::is_mounted;

/// Whether process `pid` is still running (a zombie waiting for its parent is not).
fn running(pid: &str) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// Wait, without a deadline, for the script to reach the point where it sleeps.
fn wait_for(path: &Path) {
    while !path.exists() {
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn cancelling_kills_the_script_and_unmounts() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    fs::create_dir_all(tree.join("etc")).unwrap();
    fs::write(tree.join("etc/hostname"), "builder\n").unwrap();
    let started = dir.path().join("started");
    let cwd_file = dir.path().join("cwd");
    let pid_file = dir.path().join("sleep.pid");
    let script = dir.path().join("slow.sh");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\npwd > {cwd}\necho before > etc/before\nsleep 600 &\necho $! > {pid}\n\
             touch {started}\nwait\necho after > etc/after\n",
            cwd = cwd_file.display(),
            pid = pid_file.display(),
            started = started.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let guest = GuestFs::new(Box::new(DirFs::open(&tree, true).unwrap()), "tree");

    let canceller = {
        let started = started.clone();
        thread::spawn(move || {
            wait_for(&started);
            snf_core::cancel::request();
        })
    };
    let result = hostrun::run_scripts(guest, &[script], &Metadata::new(), None, &Quiet);
    canceller.join().unwrap();
    snf_core::cancel::reset();

    let err = result.map(|_| ()).unwrap_err();
    assert!(matches!(err, HostRunError::Cancelled(_)), "{err:?}");
    assert_eq!(err.to_string(), "interrupted by the user");
    // The script's own child was killed with it.
    let pid = fs::read_to_string(&pid_file).unwrap();
    assert!(!running(pid.trim()), "the script's child {pid} still runs");
    // What happened before the cancel is there; nothing after it.
    assert_eq!(fs::read(tree.join("etc/before")).unwrap(), b"before\n");
    assert!(!tree.join("etc/after").exists());
    let mnt = PathBuf::from(fs::read_to_string(&cwd_file).unwrap().trim());
    assert!(!is_mounted(&mnt));
    assert!(!mnt.exists(), "{} was left behind", mnt.display());
}
