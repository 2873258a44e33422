//! The fixture plumbing itself: disks built by `Disk` hold what the real tools say they
//! hold, and the `Recorder` keeps what it was told.

use std::process::Command;

use snf_core::report::{Reporter, Unit};
use snf_testkit::fixture::{
    assert_ext_clean, pseudo_random, run, write_file, write_symlink, Disk, Mke2fs, MIB,
};
use snf_testkit::report::Recorder;
use snf_testkit::{guest_file, partitions, probe_partition};

const SWAP_UUID: &str = "5a5a5a5a-1111-2222-3333-444444444444";
const ROOT_UUID: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";

#[test]
fn a_partitioned_disk_holds_the_tree_in_ext4_and_a_swap_area() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    write_file(&tree, "/etc/hostname", "fixture\n");
    write_file(&tree, "data.bin", pseudo_random(100_000, 5));
    write_symlink(&tree, "/etc/name", "/etc/hostname");
    let disk = Disk::create(
        dir.path().join("disk.img"),
        40 * MIB,
        "label: dos\nstart=2048, size=24M, type=83\nsize=8M, type=82\n",
    );
    let root = Mke2fs::ext4().uuid(ROOT_UUID).block_size(1024).tree(&tree);
    disk.ext(1, &root).swap(2, Some(SWAP_UUID));
    assert_eq!((disk.offset(1), disk.size(1)), (MIB, 24 * MIB));
    assert_eq!((disk.offset(2), disk.size(2)), (25 * MIB, 8 * MIB));

    let img = disk.into_path();
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 40 * MIB);
    let (label, parts) = partitions(&img).unwrap();
    assert_eq!(label, "dos");
    assert_eq!(parts.len(), 2);
    assert_ext_clean(&img, MIB, "partition 1");
    assert_eq!(
        probe_partition(&img, 1).unwrap(),
        (ROOT_UUID.to_string(), "ext4".to_string())
    );
    assert_eq!(
        probe_partition(&img, 2).unwrap(),
        (SWAP_UUID.to_string(), "swap".to_string())
    );
    assert_eq!(
        guest_file(&img, 1, "/etc/hostname").unwrap().unwrap(),
        b"fixture\n"
    );
    assert_eq!(
        guest_file(&img, 1, "/data.bin").unwrap().unwrap(),
        pseudo_random(100_000, 5)
    );
    // The filesystem fills its partition exactly.
    let dump = run(Command::new("dumpe2fs")
        .arg("-h")
        .arg(format!("{}?offset={MIB}", img.display())));
    assert!(
        dump.lines()
            .any(|l| l.starts_with("Block count:") && l.ends_with(" 24576")),
        "{dump}"
    );
    // No swap file left next to the image.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn a_table_for_4096_byte_sectors_is_read_back_in_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    write_file(&tree, "/etc/hostname", "big sectors\n");
    let disk = Disk::create_with_sectors(
        dir.path().join("disk.img"),
        32 * MIB,
        4096,
        "label: gpt\nsize=16M, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n",
    );
    // sfdisk's default first partition is 1 MiB aligned whatever the sector size.
    assert_eq!((disk.offset(1), disk.size(1)), (MIB, 16 * MIB));
    disk.ext(1, &Mke2fs::ext4().tree(&tree));
    assert_ext_clean(disk.path(), MIB, "partition 1");
}

#[test]
fn the_recorder_keeps_every_message_in_order() {
    let rec = Recorder::default();
    rec.info("Examining source media");
    rec.warn("no swap");
    rec.detail("removed /tmp/x");
    rec.success("done");
    rec.task("copying", 10, Unit::Bytes).finish("ok");
    assert_eq!(rec.infos(), ["Examining source media", "done"]);
    assert_eq!(rec.warnings(), ["no swap"]);
    assert_eq!(rec.details(), ["removed /tmp/x"]);
    assert_eq!(
        rec.lines(),
        ["Examining source media", "warning: no swap", "done"]
    );
    assert!(rec.said("source") && !rec.said("swap"));
    assert!(rec.warned("swap") && !rec.warned("source"));
}
