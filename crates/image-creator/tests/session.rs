//! The session driven stage by stage, as the interactive UI does: stage order, the
//! metadata after the merge, and cleanup when a session is dropped half way.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use image_creator::core::report::quiet;
use image_creator::options::RunOptions;
use image_creator::session::{Session, Stage};
use snf_testkit::fixture::{run, write_file, Disk, Mke2fs};

/// A 16 MiB MBR disk with one ext4 partition holding a minimal Debian root.
fn debian_disk(dir: &Path) -> PathBuf {
    let tree = dir.join("tree");
    write_file(
        &tree,
        "/etc/os-release",
        "ID=debian\nVERSION_ID=\"12\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n",
    );
    write_file(&tree, "/etc/fstab", "/dev/sda1 / ext4 defaults 0 1\n");
    let disk = Disk::create(
        dir.join("disk.raw"),
        16 << 20,
        "label: dos\nstart=2048, type=83\n",
    );
    disk.ext(1, &Mke2fs::ext4().tree(&tree));
    disk.into_path()
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
    run(Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "qcow2"])
        .arg(&raw)
        .arg(&qcow));
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
