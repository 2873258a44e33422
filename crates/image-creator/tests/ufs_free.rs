//! The free blocks of a UFS partition (made by makefs, FreeBSD layout, on GPT) are
//! listed for the dump to write as holes, and nothing the files use is among them:
//! zeroing every listed range leaves every file intact. A UFS filesystem not cleanly
//! unmounted is kept whole.

use std::path::Path;
use std::process::Command;

use image_creator::shrink;
use snf_disk::partition::Layout;
use snf_guestfs::{GuestFs, UfsFs};
use snf_testkit::fixture::{copy_into, run, sparse_file, write_at};
use snf_testkit::report::Recorder;
use snf_testkit::ufs::{self, Layout as UfsLayout};

const MIB: u64 = 1 << 20;

#[test]
fn free_ufs_blocks_are_listed_and_hold_no_file_data() {
    let dir = tempfile::tempdir_in(snf_testkit::target_dir()).unwrap();
    let tree = dir.path().join("tree");
    ufs::sample_tree(&tree);
    let fsimg = dir.path().join("ufs.img");
    ufs::make_image(&fsimg, &tree, UfsLayout::Ufs2FreeBsd, 128);
    let img = dir.path().join("disk.img");
    sparse_file(&img, 132 * MIB);
    run(Command::new("sgdisk")
        .args(["-n", "1:2048:+128M", "-t", "1:a503"])
        .arg(&img));
    copy_into(&fsimg, &img, MIB);

    let layout = Layout::read_file(&img, 512).unwrap();
    let p1 = layout.partition(1).unwrap();
    let rec = Recorder::default();
    let free = shrink::free_ranges(&img, &layout, &rec);
    assert!(free
        .iter()
        .all(|r| r.start >= p1.offset() && r.end <= p1.end_offset()));
    let bytes: u64 = free.iter().map(|r| r.end - r.start).sum();
    let sum = ufs::check(&img, p1.offset()).unwrap();
    assert_eq!(bytes, sum.blocks_free * sum.block_size, "{free:?}");

    // Zero what was listed: the filesystem and every file survive.
    for r in &free {
        let mut at = r.start;
        while at < r.end {
            let n = (r.end - at).min(4 * MIB);
            write_at(&img, at, &vec![0u8; n as usize]);
            at += n;
        }
    }
    ufs::check(&img, p1.offset()).unwrap();
    let fs = UfsFs::open(&img, p1.offset(), p1.size(), false).unwrap();
    let mut g = GuestFs::new(Box::new(fs), "ufs");
    let big = std::fs::read(tree.join("var/big")).unwrap();
    assert!(g.read(Path::new("/var/big")).unwrap() == big);
    assert_eq!(g.read(Path::new("/etc/motd")).unwrap(), b"welcome\n");
    g.close().unwrap();

    // Not clean: nothing of it is listed.
    let sb = p1.offset() + 65536 + 209;
    write_at(&img, sb, &[0]);
    let free = shrink::free_ranges(&img, &layout, &Recorder::default());
    assert!(free.is_empty(), "{free:?}");
}
