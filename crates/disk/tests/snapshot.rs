//! The working disk: contents equal qemu-img's raw conversion, the source is never
//! written in snapshot mode, holes stay holes, the work directory goes away.

mod disk_support;

use std::fs::File;
use std::os::unix::fs::FileExt;

use disk_support::*;
use snf_core::report::Quiet;
use snf_disk::{SnapshotError, SnapshotMode, Source, WorkDir, WorkingDisk};

#[test]
fn working_disk_equals_qemu_img_raw_conversion_for_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_fixture(dir.path(), "disk.raw");
    let wd = WorkDir::create(Some(dir.path())).unwrap();
    for (label, fmt, opts, _) in FORMATS {
        let img = convert_to(&raw, dir.path(), label, fmt, opts);
        let source = Source::examine(&img).unwrap();
        let reference = reference_raw(&img, source.format(), dir.path());
        let disk = WorkingDisk::open(&source, &wd, SnapshotMode::Snapshot, &Quiet).unwrap();
        assert_eq!(disk.size(), DISK, "{label}");
        assert_eq!(disk.sector_size(), 512);
        if label == "raw" {
            assert!(
                !disk.is_writable() && !disk.is_copy(),
                "raw starts as a view"
            );
            assert_eq!(disk.path(), source.path());
        } else {
            assert!(disk.is_writable() && disk.is_copy(), "{label} is converted");
            assert!(disk.path().starts_with(wd.path()), "{label}");
            // qemu-img convert -S 4k keeps the copy sparse.
            assert!(
                allocated(disk.path()) < 16 << 20,
                "{label}: copy is not sparse"
            );
        }
        let r = File::open(&reference).unwrap();
        assert_same_bytes(disk.file(), &r, DISK, label);
        // And the fixture content itself survived the round trip.
        let mut b = vec![0u8; EXTENTS[1].1 as usize];
        disk.file().read_exact_at(&mut b, EXTENTS[1].0).unwrap();
        assert_eq!(b, pseudo_random(b.len(), 2), "{label}");
    }
}

#[test]
fn writing_the_working_copy_leaves_a_raw_source_untouched_and_sparse() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_fixture(dir.path(), "disk.raw");
    let before = sha256(&raw);
    let wd = WorkDir::create(Some(dir.path())).unwrap();
    let source = Source::examine(&raw).unwrap();
    let mut disk = WorkingDisk::open(&source, &wd, SnapshotMode::Snapshot, &Quiet).unwrap();
    assert!(
        disk.file().write_all_at(b"x", 0).is_err(),
        "the view of the source must be read-only"
    );
    disk.make_writable(&Quiet).unwrap();
    assert!(disk.is_writable() && disk.is_copy());
    assert_ne!(disk.path(), source.path());
    assert!(disk.path().starts_with(wd.path()));
    assert_same_bytes(disk.file(), &File::open(&raw).unwrap(), DISK, "copy");
    // Holes stay holes: the copy allocates no more than the source (plus a block or so
    // per extent for file-system rounding).
    assert!(
        allocated(disk.path()) <= allocated(&raw) + (64 << 10),
        "copy {} vs source {}",
        allocated(disk.path()),
        allocated(&raw)
    );
    disk.file().write_all_at(&[0xAB; 4096], 0).unwrap();
    disk.file().write_all_at(&[0xCD; 4096], 30 << 20).unwrap();
    disk.make_writable(&Quiet).unwrap(); // no-op now
    let mut b = [0u8; 1];
    disk.file().read_exact_at(&mut b, 30 << 20).unwrap();
    assert_eq!(b[0], 0xCD, "make_writable twice keeps the copy");
    assert_eq!(sha256(&raw), before, "the source changed");
}

#[test]
fn all_zero_blocks_of_the_source_become_holes_of_the_copy() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("zeros.raw");
    // 8 MiB of written zeros (allocated) and one data block.
    let f = File::create(&raw).unwrap();
    f.write_all_at(&vec![0u8; 8 << 20], 0).unwrap();
    f.write_all_at(&[1u8; 4096], 4 << 20).unwrap();
    f.sync_all().unwrap();
    assert!(allocated(&raw) >= 8 << 20);
    let wd = WorkDir::create(Some(dir.path())).unwrap();
    let source = Source::examine(&raw).unwrap();
    let mut disk = WorkingDisk::open(&source, &wd, SnapshotMode::Snapshot, &Quiet).unwrap();
    disk.make_writable(&Quiet).unwrap();
    assert_same_bytes(disk.file(), &File::open(&raw).unwrap(), 8 << 20, "copy");
    assert!(
        allocated(disk.path()) <= 64 << 10,
        "{}",
        allocated(disk.path())
    );
}

#[test]
fn block_device_copy_leaves_the_device_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_fixture(dir.path(), "disk.raw");
    let before = sha256(&raw);
    let lo = Loop::attach(&raw, 512, false);
    let wd = WorkDir::create(Some(dir.path())).unwrap();
    let source = Source::examine(lo.path()).unwrap();
    let mut disk = WorkingDisk::open(&source, &wd, SnapshotMode::Snapshot, &Quiet).unwrap();
    assert!(!disk.is_writable());
    assert_eq!(disk.path(), lo.path());
    disk.make_writable(&Quiet).unwrap();
    assert!(disk.is_copy());
    assert_same_bytes(disk.file(), &File::open(&raw).unwrap(), DISK, "device copy");
    // Zero blocks of the device are skipped, so the copy is as sparse as the data.
    assert!(
        allocated(disk.path()) < 8 << 20,
        "{}",
        allocated(disk.path())
    );
    disk.file().write_all_at(&[0xEE; 512], 0).unwrap();
    assert_eq!(sha256(lo.path()), before, "the device changed");
    drop(lo);
    assert_eq!(sha256(&raw), before, "the backing file changed");
}

#[test]
fn no_snapshot_writes_a_raw_source_in_place_and_refuses_other_formats() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_fixture(dir.path(), "disk.raw");
    let wd = WorkDir::create(Some(dir.path())).unwrap();
    let source = Source::examine(&raw).unwrap();
    let mut disk = WorkingDisk::open(&source, &wd, SnapshotMode::NoSnapshot, &Quiet).unwrap();
    assert!(disk.is_writable() && !disk.is_copy());
    assert_eq!(disk.path(), source.path());
    disk.make_writable(&Quiet).unwrap();
    assert_eq!(disk.path(), source.path(), "make_writable is a no-op");
    disk.file().write_all_at(b"written in place", 100).unwrap();
    let err = disk.set_size(1 << 20).unwrap_err();
    assert!(matches!(err, SnapshotError::NotACopy { .. }), "{err}");
    drop(disk);
    let data = read_all(&raw);
    assert_eq!(&data[100..116], b"written in place");
    assert_eq!(data.len() as u64, DISK, "the source was not truncated");

    let qcow = convert_to(&raw, dir.path(), "q", "qcow2", "");
    let source = Source::examine(&qcow).unwrap();
    let err = WorkingDisk::open(&source, &wd, SnapshotMode::NoSnapshot, &Quiet).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "--no-snapshot works only on raw images and block devices: {} is qcow2",
            qcow.display()
        )
    );
}

#[test]
fn set_size_truncates_only_the_private_copy() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_fixture(dir.path(), "disk.raw");
    let wd = WorkDir::create(Some(dir.path())).unwrap();
    let source = Source::examine(&raw).unwrap();
    let mut disk = WorkingDisk::open(&source, &wd, SnapshotMode::Snapshot, &Quiet).unwrap();
    assert!(matches!(
        disk.set_size(1 << 20),
        Err(SnapshotError::NotACopy { .. })
    ));
    disk.make_writable(&Quiet).unwrap();
    disk.set_size(32 << 20).unwrap();
    assert_eq!(disk.size(), 32 << 20);
    assert_eq!(std::fs::metadata(disk.path()).unwrap().len(), 32 << 20);
    assert_eq!(std::fs::metadata(&raw).unwrap().len(), DISK);
}

#[test]
fn host_source_is_bundled_and_a_failure_leaves_nothing() {
    // A root that has no filesystem mounted on it: the bundle (the real one is
    // crates/disk/tests/host_bundle.rs) fails cleanly, before anything is written.
    let dir = tempfile::tempdir().unwrap();
    let wd = WorkDir::create(Some(dir.path())).unwrap();
    let source = Source::examine("/").unwrap();
    std::env::set_var(snf_disk::host::ROOT_ENV, dir.path().join("no-such-root"));
    let err = WorkingDisk::open(&source, &wd, SnapshotMode::Snapshot, &Quiet).unwrap_err();
    std::env::remove_var(snf_disk::host::ROOT_ENV);
    assert!(matches!(err, SnapshotError::Host(_)));
    let msg = err.to_string();
    assert!(
        msg == "host bundling needs root" || msg.contains("no filesystem is mounted on"),
        "{msg}"
    );
    assert_eq!(std::fs::read_dir(wd.path()).unwrap().count(), 0);
}

#[test]
fn work_dir_and_copy_are_removed_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_fixture(dir.path(), "disk.raw");
    let qcow = convert_to(&raw, dir.path(), "q", "qcow2", "");
    let parent = dir.path().join("work");
    std::fs::create_dir(&parent).unwrap();
    let wd = WorkDir::create(Some(&parent)).unwrap();
    let wd_path = wd.path().to_path_buf();
    let disk = WorkingDisk::open(
        &Source::examine(&qcow).unwrap(),
        &wd,
        SnapshotMode::Snapshot,
        &Quiet,
    )
    .unwrap();
    let copy = disk.path().to_path_buf();
    assert!(copy.exists());
    drop(wd);
    assert!(
        wd_path.exists(),
        "the working disk keeps the work directory alive"
    );
    drop(disk);
    assert!(!copy.exists() && !wd_path.exists());
    assert_eq!(std::fs::read_dir(&parent).unwrap().count(), 0);
}

#[test]
fn not_enough_space_is_reported_up_front_and_nothing_is_left() {
    require("mount");
    let small = SmallFs::new(8);
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("big.raw");
    let f = File::create(&raw).unwrap();
    f.write_all_at(&pseudo_random(16 << 20, 3), 0).unwrap();
    f.set_len(DISK).unwrap();
    f.sync_all().unwrap();
    let source = Source::examine(&raw).unwrap();
    {
        let wd = WorkDir::create(Some(small.path())).unwrap();
        let mut disk = WorkingDisk::open(&source, &wd, SnapshotMode::Snapshot, &Quiet).unwrap();
        let err = disk.make_writable(&Quiet).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!(
                "No space left under {}: need 16 MiB for a private copy of",
                small.path().display()
            )),
            "{msg}"
        );
        assert!(
            !disk.is_writable(),
            "still the read-only view after the failure"
        );
        let qcow = convert_to(&raw, dir.path(), "q", "qcow2", "");
        let err = WorkingDisk::open(
            &Source::examine(&qcow).unwrap(),
            &wd,
            SnapshotMode::Snapshot,
            &Quiet,
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("No space left under "), "{err}");
    }
    assert!(
        small.entries().is_empty(),
        "left behind: {:?}",
        small.entries()
    );
}

#[test]
fn running_out_of_space_midway_names_the_directory_and_cleans_up() {
    require("mount");
    let small = SmallFs::new(8);
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("big.raw");
    let f = File::create(&raw).unwrap();
    f.write_all_at(&pseudo_random(16 << 20, 4), 0).unwrap();
    f.set_len(DISK).unwrap();
    f.sync_all().unwrap();
    // A block device has no known allocation, so only a warning is given up front and
    // the copy runs into ENOSPC.
    let lo = Loop::attach(&raw, 512, false);
    let source = Source::examine(lo.path()).unwrap();
    {
        let wd = WorkDir::create(Some(small.path())).unwrap();
        let mut disk = WorkingDisk::open(&source, &wd, SnapshotMode::Snapshot, &Quiet).unwrap();
        let err = disk.make_writable(&Quiet).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!(
                "No space left under {} while writing a private copy of",
                small.path().display()
            )),
            "{msg}"
        );
    }
    assert!(
        small.entries().is_empty(),
        "left behind: {:?}",
        small.entries()
    );
}

#[test]
fn reflink_clone_costs_no_space_where_supported() {
    require("mkfs.btrfs");
    require("mount");
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("btrfs.img");
    File::create(&img).unwrap().set_len(512 << 20).unwrap();
    run(std::process::Command::new("mkfs.btrfs").arg("-q").arg(&img));
    let mnt = tempfile::tempdir().unwrap();
    run(std::process::Command::new("mount")
        .args(["-o", "loop"])
        .arg(&img)
        .arg(mnt.path()));
    struct Umount<'a>(&'a std::path::Path);
    impl Drop for Umount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(self.0).status();
        }
    }
    let _umount = Umount(mnt.path());
    let raw = mnt.path().join("disk.raw");
    let f = File::create(&raw).unwrap();
    f.write_all_at(&pseudo_random(64 << 20, 5), 0).unwrap();
    f.set_len(128 << 20).unwrap();
    f.sync_all().unwrap();
    let before = sha256(&raw);
    let wd = WorkDir::create(Some(mnt.path())).unwrap();
    let source = Source::examine(&raw).unwrap();
    let mut disk = WorkingDisk::open(&source, &wd, SnapshotMode::Snapshot, &Quiet).unwrap();
    run(&mut std::process::Command::new("sync"));
    let free_before = snf_disk::workdir::free_bytes(mnt.path()).unwrap();
    disk.make_writable(&Quiet).unwrap();
    disk.file().sync_all().unwrap();
    run(&mut std::process::Command::new("sync"));
    let free_after = snf_disk::workdir::free_bytes(mnt.path()).unwrap();
    assert!(
        free_before.saturating_sub(free_after) < 16 << 20,
        "the clone used {} bytes",
        free_before - free_after
    );
    assert_same_bytes(disk.file(), &File::open(&raw).unwrap(), 128 << 20, "clone");
    disk.file().write_all_at(&[0u8; 4096], 0).unwrap();
    assert_eq!(sha256(&raw), before, "writing the clone changed the source");
}
