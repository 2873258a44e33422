//! Shrinking the last NTFS partition of Windows-shaped disks (mkntfs, filled through
//! a FUSE ntfs-3g mount), checked with ntfsresize --info, ntfsfix -n, ntfscat and
//! sgdisk/sfdisk, and the refusal of a volume Windows did not shut down fully.

use std::fs::OpenOptions;
use std::path::Path;
use std::process::Command;

use image_creator::shrink::{self, Method, ShrinkError, ShrinkOptions};
use snf_disk::partition::Layout;
use snf_disk::WorkDir;
use snf_testkit::fixture::{assert_sfdisk_verifies, assert_sgdisk_verifies, pseudo_random, run};
use snf_testkit::ntfs::{self, WindowsDisk, BIG_FILE_SEED, BIG_FILE_SIZE};
use snf_testkit::report::Recorder;

fn shrink_disk(dir: &Path, img: &Path) -> Result<(Layout, shrink::ShrinkOutcome), ShrinkError> {
    let mut layout = Layout::read_file(img, 512).unwrap();
    let workdir = WorkDir::create(Some(dir)).unwrap();
    let opts = ShrinkOptions {
        workdir: &workdir,
        method: Some(Method::Extract),
    };
    let done = shrink::shrink(img, &mut layout, &opts, &Recorder::default())?;
    OpenOptions::new()
        .write(true)
        .open(img)
        .unwrap()
        .set_len(done.new_size)
        .unwrap();
    Ok((layout, done))
}

#[test]
fn the_last_ntfs_partition_of_a_gpt_disk_is_shrunk_and_stays_consistent() {
    shrinks(true);
}

#[test]
fn the_last_ntfs_partition_of_an_mbr_disk_is_shrunk_and_stays_consistent() {
    shrinks(false);
}

fn shrinks(gpt: bool) {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    let d = WindowsDisk::create(&img, dir.path(), gpt, false);
    let (_, old_size) = d.c();
    let (layout, done) = shrink_disk(dir.path(), &img).unwrap();
    let fs = done.shrunk.clone().expect("shrunk");
    assert_eq!((fs.partition, fs.fs), (2, "ntfs"));
    assert!(
        fs.partition_bytes < old_size - 16 * 1024 * 1024,
        "{fs:?} from {old_size}"
    );
    assert!(done.new_size < done.old_size);
    if gpt {
        assert_sgdisk_verifies(img.to_str().unwrap());
    } else {
        assert_sfdisk_verifies(img.to_str().unwrap());
    }
    let p2 = layout.partition(2).unwrap();
    assert_eq!(p2.size(), fs.partition_bytes);

    let part = dir.path().join("c.ntfs");
    ntfs::extract(&img, p2.offset(), p2.size(), &part);
    ntfs::assert_ntfsfix_clean(&part, "after the shrink");
    // Without --force: refuses a volume marked dirty or to be checked.
    let info = run(Command::new("ntfsresize")
        .args(["--info", "--no-progress-bar"])
        .arg(&part));
    assert!(info.contains("You might resize at"), "{info}");
    assert_eq!(
        ntfs::ntfscat(&part, "/Program Files/Big/big.bin"),
        pseudo_random(BIG_FILE_SIZE, BIG_FILE_SEED)
    );
    assert_eq!(
        ntfs::ntfscat(&part, "/Windows/System32/config/SYSTEM"),
        b"hive SYSTEM"
    );

    // Its free clusters are holes for the copy and the dump.
    let free = shrink::free_ranges(&img, &layout, &Recorder::default());
    let inside: u64 = free
        .iter()
        .filter(|r| r.start >= p2.offset() && r.end <= p2.offset() + p2.size())
        .map(|r| r.end - r.start)
        .sum();
    assert!(inside > 4 * 1024 * 1024, "{free:?}");
}

#[test]
fn a_dirty_or_hibernated_ntfs_volume_is_refused_before_anything_changes() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("dirty.img");
    let d = WindowsDisk::create(&img, dir.path(), false, false);
    ntfs::set_dirty(&img, d.c().0);
    let before = std::fs::read(&img).unwrap();
    let e = shrink_disk(dir.path(), &img).unwrap_err();
    assert!(matches!(e, ShrinkError::Ntfs { partition: 2, .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("shut it down fully"), "{msg}");
    assert!(
        msg.starts_with("partition 2: the NTFS volume") && !msg.contains("dirty.img"),
        "{msg}"
    );
    assert!(std::fs::read(&img).unwrap() == before, "the disk changed");
    assert_sfdisk_verifies(img.to_str().unwrap());

    let img = dir.path().join("hibernated.img");
    WindowsDisk::create(&img, dir.path(), true, true);
    let e = shrink_disk(dir.path(), &img).unwrap_err();
    assert!(e.to_string().contains("hibernated"), "{e}");
}
