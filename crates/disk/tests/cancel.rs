//! Cancellation (Ctrl-C) in the middle of a dump, a copy and a conversion. The flag is
//! process-wide, so this file holds a single test (each test file is its own process).

mod disk_support;

use std::fs::File;
use std::os::unix::fs::FileExt;

use disk_support::*;
use snf_core::{cancel, Reporter, Task, Unit};
use snf_disk::{dump, SnapshotMode, Source, WorkDir, WorkingDisk};

/// Requests cancellation once a progress counter passes `at` bytes.
struct CancelAt(u64);

struct CancelTask(u64);

impl Task for CancelTask {
    fn inc(&self, _n: u64) {}
    fn set_position(&self, pos: u64) {
        if pos >= self.0 {
            cancel::request();
        }
    }
    fn finish(&self, _result: &str) {}
}

impl Reporter for CancelAt {
    fn info(&self, _msg: &str) {}
    fn warn(&self, _msg: &str) {}
    fn task(&self, _title: &str, _total: u64, _unit: Unit) -> Box<dyn Task> {
        Box::new(CancelTask(self.0))
    }
}

#[test]
fn cancelling_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.raw");
    let f = File::create(&raw).unwrap();
    f.write_all_at(&pseudo_random(32 << 20, 8), 0).unwrap();
    f.set_len(DISK).unwrap();
    drop(f);
    let quiet = snf_core::report::Quiet;

    // The dump: no partial file, an existing output untouched.
    let parent = dir.path().join("work");
    std::fs::create_dir(&parent).unwrap();
    let wd = WorkDir::create(Some(&parent)).unwrap();
    let source = Source::examine(&raw).unwrap();
    let disk = WorkingDisk::open(&source, &wd, SnapshotMode::Snapshot, &quiet).unwrap();
    let outdir = dir.path().join("out");
    std::fs::create_dir(&outdir).unwrap();
    let out = outdir.join("image.img");
    std::fs::write(&out, b"older image").unwrap();
    let err = dump(&disk, DISK, &[], &out, &CancelAt(4 << 20)).unwrap_err();
    assert!(err.is_cancelled(), "{err}");
    cancel::reset();
    assert_eq!(std::fs::read(&out).unwrap(), b"older image");
    assert_eq!(
        std::fs::read_dir(&outdir).unwrap().count(),
        1,
        "a partial file is left"
    );

    // Finishing a private copy in place: the copy goes, the older image stays.
    let mut copy_disk = WorkingDisk::open(&source, &wd, SnapshotMode::Snapshot, &quiet).unwrap();
    copy_disk.make_writable(&quiet).unwrap();
    let same_fs_out = parent.join("image.img");
    std::fs::write(&same_fs_out, b"older image").unwrap();
    assert!(snf_disk::dump::can_finish_in_place(
        &copy_disk,
        &same_fs_out
    ));
    let err = snf_disk::finish_in_place(copy_disk, DISK, &[], &same_fs_out, &CancelAt(4 << 20))
        .unwrap_err();
    assert!(err.is_cancelled(), "{err}");
    cancel::reset();
    assert_eq!(std::fs::read(&same_fs_out).unwrap(), b"older image");
    assert_eq!(
        std::fs::read_dir(wd.path()).unwrap().count(),
        0,
        "the private copy is left behind"
    );
    std::fs::remove_file(&same_fs_out).unwrap();

    // The private copy of a raw source.
    let mut disk = disk;
    let err = disk.make_writable(&CancelAt(4 << 20)).unwrap_err();
    assert!(err.is_cancelled(), "{err}");
    cancel::reset();
    assert!(!disk.is_writable());
    assert_eq!(
        std::fs::read_dir(wd.path()).unwrap().count(),
        0,
        "copy left behind"
    );
    drop(disk);

    // The qemu-img conversion of another format: qemu-img is killed, nothing is left.
    let qcow = convert_to(&raw, dir.path(), "q", "qcow2", "");
    let source = Source::examine(&qcow).unwrap();
    let err = WorkingDisk::open(&source, &wd, SnapshotMode::Snapshot, &CancelAt(0)).unwrap_err();
    cancel::reset();
    assert!(err.is_cancelled(), "{err}");
    assert_eq!(
        std::fs::read_dir(wd.path()).unwrap().count(),
        0,
        "conversion left behind"
    );
    drop(wd);
    assert_eq!(
        std::fs::read_dir(&parent).unwrap().count(),
        0,
        "work dir left behind"
    );
}
