//! Bad-input cases: guests whose partition table or filesystem is damaged, crafted or
//! beyond what the tools support.

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use snf_testkit::fixture::{
    assert_sgdisk_verifies, run as run_tool, set_ext_feature_bits, write_file, Disk, Mke2fs,
};

use crate::common::debian_root;
use crate::harness::{Case, Outcome};

/// A minimal Debian root (enough for inspection) in a fresh tree under `dir`.
fn debian_tree(dir: &Path, fstab_root: &str) -> PathBuf {
    let tree = dir.join("tree");
    debian_root(
        &tree,
        &format!("{fstab_root} / ext4 errors=remount-ro 0 1\n"),
    );
    write_file(
        &tree,
        "/etc/shadow",
        "root:$6$salt$hash:19000:0:99999:7:::\n",
    );
    tree
}

/// A 64 MiB disk partitioned by the sfdisk `script` whose partition `root` holds the
/// Debian root.
fn disk_with_root(case: &Case, script: &str, root: u32) -> PathBuf {
    disk_with_root_and_swap(case, script, root, None)
}

/// [`disk_with_root`] with a swap area in partition `swap`.
fn disk_with_root_and_swap(case: &Case, script: &str, root: u32, swap: Option<u32>) -> PathBuf {
    let tree = debian_tree(case.dir(), &format!("/dev/sda{root}"));
    let disk = Disk::create(case.path("disk.img"), 64 << 20, script);
    disk.ext(root, &Mke2fs::ext4().tree(&tree));
    if let Some(n) = swap {
        disk.swap(n, None);
    }
    fs::remove_dir_all(&tree).unwrap();
    disk.into_path()
}

fn run_on(case: &Case, img: &Path) -> Outcome {
    let out = case.path("out.raw");
    case.run(&[img.to_str().unwrap(), "-o", out.to_str().unwrap()])
}

fn patch(img: &Path, offset: u64, bytes: &[u8]) {
    let f = fs::OpenOptions::new().write(true).open(img).unwrap();
    f.write_all_at(bytes, offset).unwrap();
}

fn read(img: &Path, offset: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    fs::File::open(img)
        .unwrap()
        .read_exact_at(&mut buf, offset)
        .unwrap();
    buf
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

const ONE_ROOT: &str = "label: dos\nstart=2048, type=83\n";

#[test]
fn an_ext_feature_libext2fs_lacks_is_named_with_its_partition() {
    let mut case = Case::new();
    let img = disk_with_root(&case, ONE_ROOT, 1);
    set_ext_feature_bits(&img, 1 << 20, 0x60, 0x80000);
    case.watch(&img);
    run_on(&case, &img).failure(&[
        "partition 1: the ext4 filesystem",
        "libext2fs",
        "incompat 0x80000",
    ]);
}

/// An unknown ro_compat feature still lets the guest be read, but not changed.
#[test]
fn a_read_only_compatible_feature_fails_the_writable_open_by_name() {
    let mut case = Case::new();
    let img = disk_with_root(&case, ONE_ROOT, 1);
    set_ext_feature_bits(&img, 1 << 20, 0x64, 0x4000_0000);
    case.watch(&img);
    run_on(&case, &img).failure(&["partition 1", "ro_compat 0x40000000"]);
}

const GPT_ROOT_SWAP: &str = "label: gpt\nsize=40M, type=L\ntype=S\n";

/// A GPT disk whose root and swap are mirrored in a hybrid MBR: the image's hybrid
/// entries follow the shrunk GPT (the swap's entry goes with the swap), so `sgdisk -v`
/// finds nothing wrong with it.
#[test]
fn a_hybrid_mbr_is_consistent_after_the_shrink() {
    let mut case = Case::new();
    let img = disk_with_root_and_swap(&case, GPT_ROOT_SWAP, 1, Some(2));
    run_tool(Command::new("sgdisk").args(["-h", "1:2"]).arg(&img));
    assert_sgdisk_verifies(img.to_str().unwrap());
    case.watch(&img);
    let outcome = run_on(&case, &img);
    outcome.succeeded();
    assert!(
        outcome.stderr().contains("Removing swap partition 2"),
        "{}",
        outcome.stderr()
    );
    let out = case.path("out.raw");
    assert_sgdisk_verifies(out.to_str().unwrap());
    let s0 = read(&out, 446, 64);
    let used: Vec<u8> = (0..4).map(|i| s0[16 * i + 4]).filter(|&t| t != 0).collect();
    assert_eq!(used, [0xee, 0x83], "the protective entry and the root's");
}

/// A GPT whose primary header is corrupt is read from its backup, and the image gets
/// a whole, valid table.
#[test]
fn a_corrupt_primary_gpt_header_is_read_from_the_backup() {
    let mut case = Case::new();
    let img = disk_with_root_and_swap(&case, GPT_ROOT_SWAP, 1, Some(2));
    // Byte 0x40 of the header is inside the disk GUID: the CRC no longer matches.
    let byte = read(&img, 512 + 0x40, 1)[0];
    patch(&img, 512 + 0x40, &[!byte]);
    case.watch(&img);
    run_on(&case, &img).succeeded();
    assert_sgdisk_verifies(case.path("out.raw").to_str().unwrap());
}

#[test]
fn both_gpt_headers_corrupt_is_an_error_naming_the_header() {
    let mut case = Case::new();
    let img = disk_with_root(&case, GPT_ROOT_SWAP, 1);
    let last = fs::metadata(&img).unwrap().len() - 512;
    for at in [512 + 0x40, last + 0x40] {
        let byte = read(&img, at, 1)[0];
        patch(&img, at, &[!byte]);
    }
    case.watch(&img);
    run_on(&case, &img).failure(&["GPT header at sector 1", "CRC32"]);
}

const LOGICALS: &str = "label: dos\nstart=2048, size=40M, type=83\n,,E\n,8M,83\n,,83\n";

/// The sector of the first EBR (the extended partition's start) and of the second.
fn ebrs(img: &Path) -> (u64, u64) {
    let ext_start = u64::from(le32(&read(img, 446 + 16, 16), 8));
    let link = read(img, ext_start * 512 + 446 + 16, 16);
    (ext_start, ext_start + u64::from(le32(&link, 8)))
}

#[test]
fn a_looping_ebr_chain_is_an_error() {
    let mut case = Case::new();
    let img = disk_with_root(&case, LOGICALS, 1);
    let (first, second) = ebrs(&img);
    // The second EBR links back to the first (links are relative to the extended
    // partition's start).
    let mut link = read(&img, second * 512 + 446 + 16, 16);
    link[4] = 0x05;
    link[8..12].copy_from_slice(&0u32.to_le_bytes());
    link[12..16].copy_from_slice(&1u32.to_le_bytes());
    patch(&img, second * 512 + 446 + 16, &link);
    case.watch(&img);
    run_on(&case, &img).failure(&["loops back", &format!("sector {first}")]);
}

#[test]
fn overlapping_logical_partitions_are_an_error() {
    let mut case = Case::new();
    let img = disk_with_root(&case, LOGICALS, 1);
    let (first, second) = ebrs(&img);
    // The first logical partition grows over the second EBR and its partition.
    let mut entry = read(&img, first * 512 + 446, 16);
    let size = le32(&entry, 12) + 8192;
    entry[12..16].copy_from_slice(&size.to_le_bytes());
    patch(&img, first * 512 + 446, &entry);
    assert!(u64::from(size) + first > second);
    case.watch(&img);
    run_on(&case, &img).failure(&["partition 5", "overlap"]);
}

#[test]
fn a_partition_past_the_end_of_the_disk_is_an_error() {
    let mut case = Case::new();
    let img = disk_with_root(
        &case,
        "label: dos\nstart=2048, size=40M, type=83\n,,83\n",
        1,
    );
    // Partition 2 claims four times the disk.
    let mut entry = read(&img, 446 + 16, 16);
    entry[12..16].copy_from_slice(&(4 * 131072u32).to_le_bytes());
    patch(&img, 446 + 16, &entry);
    case.watch(&img);
    run_on(&case, &img).failure(&["partition 2", "past the end of the disk"]);
}
