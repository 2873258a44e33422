//! The session driven stage by stage, as the interactive UI does: stage order, the
//! metadata after the merge, and cleanup when a session is dropped half way.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use image_creator::core::report::quiet;
use image_creator::options::RunOptions;
use image_creator::session::{Session, SessionError, Stage};

fn tool(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {:?} (scripts/setup.sh): {e}", cmd.get_program()));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A 16 MiB MBR disk with one ext4 partition holding a minimal Debian root.
fn debian_disk(dir: &Path) -> PathBuf {
    let img = dir.join("disk.raw");
    let tree = dir.join("tree");
    fs::create_dir_all(tree.join("etc")).unwrap();
    fs::write(
        tree.join("etc/os-release"),
        "ID=debian\nVERSION_ID=\"12\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n",
    )
    .unwrap();
    fs::write(tree.join("etc/fstab"), "/dev/sda1 / ext4 defaults 0 1\n").unwrap();
    fs::File::create(&img).unwrap().set_len(16 << 20).unwrap();
    let mut sfdisk = Command::new("sfdisk")
        .args(["-q", img.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("sfdisk is missing (scripts/setup.sh)");
    sfdisk
        .stdin
        .take()
        .unwrap()
        .write_all(b"label: dos\nstart=2048, type=83\n")
        .unwrap();
    assert!(sfdisk.wait().unwrap().success());
    tool(
        Command::new("mke2fs")
            .args(["-q", "-F", "-t", "ext4", "-E", "offset=1048576", "-d"])
            .arg(&tree)
            .arg(&img)
            .arg("15M"),
    );
    img
}

fn workdirs(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".snf_image_creator."))
        .collect()
}

#[test]
fn stages_run_one_at_a_time_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let img = debian_disk(dir.path());
    let mut opts = RunOptions::new(&img);
    opts.tmpdir = Some(dir.path().to_path_buf());
    opts.sysprep = false;
    opts.outfile = Some(dir.path().join("out.raw"));
    opts.metadata.insert_assignment("os=mine").unwrap();
    let mut session = Session::new(opts, quiet()).unwrap();
    let mut ran = Vec::new();
    while let Some(stage) = session.run_next().unwrap() {
        ran.push(stage);
        if stage == Stage::MergeMetadata {
            let meta = session.metadata();
            assert_eq!(meta.get("PARTITION_TABLE"), Some("msdos"));
            assert_eq!(meta.get("OSFAMILY"), Some("linux"));
            assert_eq!(meta.get("OS"), Some("mine"), "-m overrides inspection");
        }
    }
    assert_eq!(ran, Stage::ALL.to_vec());
    let written = session.written_image().unwrap().clone();
    assert_eq!(written.size, 16 << 20);
    assert_eq!(
        workdirs(dir.path()).len(),
        1,
        "the work dir lives with the session"
    );
    drop(session);
    assert!(workdirs(dir.path()).is_empty());
    assert_eq!(fs::read(&img).unwrap(), fs::read(&written.path).unwrap());
}

#[test]
fn dropping_a_session_half_way_removes_the_working_copy() {
    let dir = tempfile::tempdir().unwrap();
    let raw = debian_disk(dir.path());
    let qcow = dir.path().join("disk.qcow2");
    tool(
        Command::new("qemu-img")
            .args(["convert", "-f", "raw", "-O", "qcow2"])
            .arg(&raw)
            .arg(&qcow),
    );
    let mut opts = RunOptions::new(&qcow);
    opts.tmpdir = Some(dir.path().to_path_buf());
    opts.print.metadata = true;
    let mut session = Session::new(opts, quiet()).unwrap();
    session.run_until(Stage::OpenWorkingDisk).unwrap();
    assert_eq!(session.next_stage(), Some(Stage::ReadPartitionTable));
    let copy = session.working_disk().unwrap().path().to_path_buf();
    assert!(copy.starts_with(dir.path()) && copy.is_file());
    drop(session);
    assert!(!copy.exists());
    assert!(workdirs(dir.path()).is_empty());
}

#[test]
fn unsupported_features_are_refused_before_anything_happens() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = RunOptions::new(dir.path().join("missing.raw"));
    opts.outfile = Some(dir.path().join("out.raw"));
    opts.tmpdir = Some(dir.path().to_path_buf());
    opts.install_virtio = Some(dir.path().to_path_buf());
    let err = Session::new(opts, quiet()).err().unwrap();
    assert!(matches!(err, SessionError::Options(_)));
    assert_eq!(
        err.to_string(),
        "--install-virtio (Windows images only) is not supported yet"
    );
    assert!(workdirs(dir.path()).is_empty());
}
