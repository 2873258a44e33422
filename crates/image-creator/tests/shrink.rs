//! Shrinking and free-space elimination on real disks: tables made by sfdisk (through a
//! 4096-byte-sector loop device where needed), filesystems by mke2fs -d / mkswap /
//! mkfs.xfs, results checked by e2fsck -fn, tune2fs, sfdisk --verify and sgdisk -v, and
//! the guest's files read back through libext2fs.

mod common;

use std::fs::{self, File, OpenOptions};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use image_creator::options::RunOptions;
use image_creator::session::Session;
use image_creator::shrink::{self, Method, ShrinkOptions};
use snf_disk::partition::{Layout, TableKind, MIB};
use snf_disk::WorkDir;
use snf_guestfs::{ExtFs, GuestFs};
use snf_testkit::fixture::{
    assert_ext_clean, assert_sfdisk_verifies, assert_sgdisk_verifies, copy_into, pseudo_random,
    run, sgdisk_info, sparse_file, write_at, Disk, Loop, Mke2fs,
};
use snf_testkit::report::Recorder;

use common::Tree;

// ---- fixtures ------------------------------------------------------------------------

/// A Debian root with some data worth checking afterwards.
fn debian_tree(base: &Path, name: &str) -> Tree {
    let t = Tree::new(base, name);
    t.linux_base("UUID=11111111-2222-3333-4444-555555555555 / ext4 defaults 0 1\n")
        .file(
            "/etc/os-release",
            "ID=debian\nVERSION_ID=\"12\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n",
        )
        .file("/etc/debian_version", "12.5\n")
        .file("/etc/hostname", "fixture\n");
    fs::write(t.root.join("big.bin"), pseudo_random(3 << 20, 1)).unwrap();
    for i in 0..40 {
        t.file(
            &format!("/usr/share/doc/f{i}"),
            &format!("file {i}\n").repeat(i + 1),
        );
    }
    t
}

/// What the fixture puts in a partition.
enum Fill<'a> {
    Ext4 { tree: &'a Tree, block: u32 },
    Swap,
    Xfs,
}

/// `tree` in an ext4 filesystem of `block`-byte blocks.
fn ext4(tree: &Tree, block: u32) -> Fill<'_> {
    Fill::Ext4 { tree, block }
}

/// A disk of `mib` MiB: `script` (an sfdisk script) written with `sector_size`-byte
/// sectors, then `fills` (partition number, content).
fn make_disk(
    dir: &Path,
    mib: u64,
    sector_size: u32,
    script: &str,
    fills: &[(u32, Fill)],
) -> PathBuf {
    let disk = Disk::create_with_sectors(dir.join("disk.img"), mib * MIB, sector_size, script);
    for (n, fill) in fills {
        match fill {
            Fill::Ext4 { tree, block } => {
                disk.ext(*n, &Mke2fs::ext4().block_size(*block).tree(&tree.root));
            }
            Fill::Swap => {
                disk.swap(*n, Some("5a5a5a5a-1111-2222-3333-444444444444"));
                // Stale memory pages in the swap area: must not reach the image.
                write_at(
                    disk.path(),
                    disk.offset(*n) + disk.size(*n) / 2,
                    b"SWAPPED-OUT-SECRET",
                );
            }
            Fill::Xfs => {
                let f = dir.join("xfs.tmp");
                sparse_file(&f, disk.size(*n));
                run(Command::new("mkfs.xfs").args(["-q", "-f"]).arg(&f));
                copy_into(&f, disk.path(), disk.offset(*n));
                fs::remove_file(&f).unwrap();
            }
        }
    }
    disk.into_path()
}

// ---- checks --------------------------------------------------------------------------

/// What a shrink run must leave for an ext partition: `e2fsck -fn` clean, tune2fs
/// "clean", the filesystem filling its partition, and the tree's files unchanged.
fn assert_ext_ok(img: &Path, layout: &Layout, n: u32, tree: &Tree) {
    let p = layout.partition(n).unwrap();
    assert_ext_clean(img, p.offset(), &format!("partition {n}"));
    let fs = ExtFs::open(img, p.offset(), false).unwrap();
    let info = fs.info();
    let fs_bytes = info.blocks_count * u64::from(info.block_size);
    assert!(fs_bytes <= p.size(), "filesystem larger than partition {n}");
    assert!(
        p.size() - fs_bytes < u64::from(info.block_size),
        "partition {n} ({} bytes) is not filled by its filesystem ({fs_bytes} bytes)",
        p.size()
    );
    let mut guest = GuestFs::new(Box::new(fs), "test");
    for path in [
        "big.bin",
        "etc/os-release",
        "usr/share/doc/f7",
        "usr/share/doc/f39",
    ] {
        let want = fs::read(tree.root.join(path)).unwrap();
        let got = guest.read(&Path::new("/").join(path)).unwrap();
        assert!(want == got, "/{path} changed on partition {n}");
    }
}

/// Shrink `img` (table read with `ss`-byte sectors) with `method`, then cut the file to
/// the new size as the session does.
fn shrink_with(
    dir: &Path,
    img: &Path,
    ss: u32,
    method: Method,
) -> (Layout, shrink::ShrinkOutcome, Recorder) {
    let mut layout = Layout::read_file(img, ss).unwrap();
    let workdir = WorkDir::create(Some(dir)).unwrap();
    let rec = Recorder::default();
    let opts = ShrinkOptions {
        workdir: &workdir,
        method: Some(method),
    };
    let done = shrink::shrink(img, &mut layout, &opts, &rec).unwrap();
    OpenOptions::new()
        .write(true)
        .open(img)
        .unwrap()
        .set_len(done.new_size)
        .unwrap();
    assert_eq!(layout.disk_size(), done.new_size);
    assert_eq!(
        done.new_size,
        Layout::read_file(img, ss).unwrap().disk_size()
    );
    (layout, done, rec)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn extract_is_clean(dir: &Path) {
    // The extracted copies live in the work directory, which is gone.
    let left: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".snf_image_creator."))
        .collect();
    assert!(left.is_empty(), "work directories left: {left:?}");
}

// ---- shrink ----------------------------------------------------------------------------

const MBR_ROOT_SWAP: &str = "label: dos\nlabel-id: 0x1234abcd\nstart=2048, size=48M, type=83, bootable\nsize=16M, type=82\n";

/// An 80 MiB MBR disk: `tree` in ext4 (4 KiB blocks) on a bootable p1 of 48 MiB, then
/// a 16 MiB swap partition.
fn root_and_swap_disk(dir: &Path, tree: &Tree) -> PathBuf {
    make_disk(
        dir,
        80,
        512,
        MBR_ROOT_SWAP,
        &[(1, ext4(tree, 4096)), (2, Fill::Swap)],
    )
}

/// Write to the ext filesystem of partition 1 (at 1 MiB) of `img` with `debugfs -w -R
/// request`, behind the backend's back.
fn debugfs_p1(img: &Path, request: &str) {
    let spec = format!("{}?offset={}", img.display(), MIB);
    run(Command::new("debugfs").args(["-w", "-R", request, &spec]));
}

fn mbr_root_and_trailing_swap(method: Method) {
    let dir = tempfile::tempdir().unwrap();
    let tree = debian_tree(dir.path(), "tree");
    let img = root_and_swap_disk(dir.path(), &tree);
    let before = Layout::read_file(&img, 512).unwrap();
    let (layout, done, rec) = shrink_with(dir.path(), &img, 512, method);

    assert_eq!(done.swap.as_deref(), Some("2:16"));
    assert!(rec.said("Removing swap partition 2"), "{:?}", rec.infos());
    let fs = done.shrunk.as_ref().expect("root shrunk");
    assert_eq!((fs.partition, fs.method), (1, method));
    assert!(fs.new_bytes < fs.old_bytes);
    assert_eq!(layout.partitions().len(), 1);
    let p1 = layout.partition(1).unwrap();
    assert_eq!(p1.start, 2048);
    assert!(p1.bootable, "the boot flag is kept");
    assert_eq!(p1.size(), fs.partition_bytes);
    assert!(p1.size() < before.partition(1).unwrap().size());
    assert_eq!(layout.mbr_disk_signature(), Some(0x1234abcd));
    assert_eq!(done.new_size, p1.end_offset() + MIB);
    assert_eq!(fs::metadata(&img).unwrap().len(), done.new_size);
    assert_sfdisk_verifies(img.to_str().unwrap());
    assert_ext_ok(&img, &layout, 1, &tree);
    // Nothing of the removed swap area is inside the image.
    assert!(!contains(&fs::read(&img).unwrap(), b"SWAPPED-OUT-SECRET"));
    extract_is_clean(dir.path());
}

#[test]
fn mbr_trailing_swap_is_removed_and_root_shrunk_through_a_loop_device() {
    mbr_root_and_trailing_swap(Method::Loop);
}

#[test]
fn mbr_trailing_swap_is_removed_and_root_shrunk_through_an_extracted_copy() {
    mbr_root_and_trailing_swap(Method::Extract);
}

#[test]
fn mbr_logical_root_is_shrunk_with_its_extended_partition() {
    let dir = tempfile::tempdir().unwrap();
    let boot = Tree::new(dir.path(), "boot");
    boot.file("/grub/grub.cfg", "set timeout=1\n");
    let tree = debian_tree(dir.path(), "tree");
    // The extended partition runs to the disk end, past its last logical.
    let script = "label: dos\nstart=2048, size=8M, type=83\ntype=5\n\
                  size=48M, type=83\nsize=16M, type=82\n";
    let img = make_disk(
        dir.path(),
        100,
        512,
        script,
        &[
            (1, ext4(&boot, 1024)),
            (5, ext4(&tree, 4096)),
            (6, Fill::Swap),
        ],
    );
    let before = Layout::read_file(&img, 512).unwrap();
    let p1_before = before.partition(1).unwrap().clone();
    let (layout, done, _) = shrink_with(dir.path(), &img, 512, Method::Extract);

    assert_eq!(done.swap.as_deref(), Some("6:16"));
    let numbers: Vec<u32> = layout.partitions().iter().map(|p| p.number).collect();
    assert_eq!(numbers, [1, 2, 5]);
    let (ext, p5) = (layout.partition(2).unwrap(), layout.partition(5).unwrap());
    assert!(ext.is_extended());
    assert_eq!(
        ext.end, p5.end,
        "the extended partition ends with its last logical"
    );
    assert_eq!(p5.start, before.partition(5).unwrap().start);
    assert!(p5.size() < before.partition(5).unwrap().size());
    assert_eq!(
        layout.partition(1).unwrap(),
        &p1_before,
        "partition 1 untouched"
    );
    assert_eq!(done.new_size, p5.end_offset() + MIB);
    assert_sfdisk_verifies(img.to_str().unwrap());
    assert_ext_ok(&img, &layout, 5, &tree);
    let spec = format!("{}?offset={}", img.display(), p1_before.offset());
    run(Command::new("e2fsck").args(["-fn", &spec]));
}

#[test]
fn mbr_emptied_extended_partition_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let tree = debian_tree(dir.path(), "tree");
    let script = "label: dos\nstart=2048, size=48M, type=83\ntype=5\nsize=16M, type=82\n";
    let img = make_disk(
        dir.path(),
        72,
        512,
        script,
        &[(1, ext4(&tree, 4096)), (5, Fill::Swap)],
    );
    let (layout, done, rec) = shrink_with(dir.path(), &img, 512, Method::Loop);
    assert_eq!(done.swap.as_deref(), Some("5:16"));
    let removed: Vec<(u32, &str)> = done.removed.iter().map(|r| (r.number, r.what)).collect();
    assert_eq!(removed, [(5, "swap"), (2, "extended")]);
    assert!(rec.said("Removing empty extended partition 2"));
    assert_eq!(layout.partitions().len(), 1);
    assert_eq!(
        done.new_size,
        layout.partition(1).unwrap().end_offset() + MIB
    );
    assert_sfdisk_verifies(img.to_str().unwrap());
    assert_ext_ok(&img, &layout, 1, &tree);
}

const BIOS_BOOT: &str = "21686148-6449-6E6F-744E-656564454649";
const LINUX_FS: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
const LINUX_SWAP: &str = "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F";

fn gpt_script() -> String {
    format!(
        "label: gpt\nlabel-id: 11111111-2222-3333-4444-555555555555\n\
         size=1M, type={BIOS_BOOT}, name=\"bios\", uuid=AAAAAAAA-0000-4000-8000-000000000001\n\
         size=48M, type={LINUX_FS}, name=\"root fs\", uuid=AAAAAAAA-0000-4000-8000-000000000002, attrs=\"LegacyBIOSBootable\"\n\
         size=16M, type={LINUX_SWAP}, name=\"swap\", uuid=AAAAAAAA-0000-4000-8000-000000000003\n"
    )
}

/// The disk of [`gpt_script`] under `dir`: a Debian root (its tree returned too) on
/// partition 2 and a swap area on partition 3.
fn gpt_root_and_swap(dir: &Path) -> (Tree, PathBuf) {
    let tree = debian_tree(dir, "tree");
    let img = make_disk(
        dir,
        80,
        512,
        &gpt_script(),
        &[(2, ext4(&tree, 4096)), (3, Fill::Swap)],
    );
    (tree, img)
}

#[test]
fn gpt_root_keeps_its_guids_and_name_and_the_table_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let (tree, img) = gpt_root_and_swap(dir.path());
    let target = img.to_str().unwrap().to_string();
    let info_before = sgdisk_info(&target, 2);
    let (layout, done, _) = shrink_with(dir.path(), &img, 512, Method::Loop);

    assert_eq!(done.swap.as_deref(), Some("3:16"));
    assert_eq!(layout.kind(), TableKind::Gpt);
    let p2 = layout.partition(2).unwrap();
    assert_eq!(done.new_size, p2.end_offset() + MIB);
    assert_sgdisk_verifies(&target);
    let info = sgdisk_info(&target, 2);
    for key in [
        "Partition GUID code",
        "Partition unique GUID",
        "Partition name",
        "First sector",
        "Attribute flags",
    ] {
        assert_eq!(info.get(key), info_before.get(key), "{key} changed");
    }
    assert_ne!(info.get("Last sector"), info_before.get("Last sector"));
    assert_eq!(
        sgdisk_info(&target, 1)
            .get("Partition name")
            .map(String::as_str),
        Some("'bios'")
    );
    assert_eq!(
        layout.gpt_disk_guid().unwrap().to_string(),
        "11111111-2222-3333-4444-555555555555"
    );
    assert_ext_ok(&img, &layout, 2, &tree);
}

#[test]
fn gpt_on_4096_byte_sectors_with_1k_blocks_is_shrunk_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let tree = debian_tree(dir.path(), "tree");
    let script = format!(
        "label: gpt\nsize=1M, type={BIOS_BOOT}, name=\"bios\"\n\
         size=40M, type={LINUX_FS}, name=\"root\", uuid=AAAAAAAA-0000-4000-8000-000000000002\n\
         size=12M, type={LINUX_SWAP}, name=\"swap\"\n"
    );
    let img = make_disk(
        dir.path(),
        64,
        4096,
        &script,
        &[(2, ext4(&tree, 1024)), (3, Fill::Swap)],
    );
    let (layout, done, _) = shrink_with(dir.path(), &img, 4096, Method::Extract);
    assert_eq!(layout.sector_size(), 4096);
    assert_eq!(done.swap.as_deref(), Some("3:12"));
    let p2 = layout.partition(2).unwrap();
    assert_eq!(p2.size() % 4096, 0);
    assert_eq!(
        p2.unique_guid.unwrap().to_string(),
        "aaaaaaaa-0000-4000-8000-000000000002"
    );
    assert_eq!(p2.name, "root");
    assert_eq!(done.new_size, p2.end_offset() + MIB);
    {
        let lo = Loop::attach(&img, 4096, false);
        assert_sgdisk_verifies(&lo.dev);
    }
    assert_ext_ok(&img, &layout, 2, &tree);
}

#[test]
fn xfs_last_partition_is_not_shrunk_but_the_image_is_cut_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let tree = debian_tree(dir.path(), "tree");
    let script = "label: dos\nstart=2048, size=48M, type=83\nsize=300M, type=83\n";
    let img = make_disk(
        dir.path(),
        400,
        512,
        script,
        &[(1, ext4(&tree, 4096)), (2, Fill::Xfs)],
    );
    let before = Layout::read_file(&img, 512).unwrap();
    let (layout, done, rec) = shrink_with(dir.path(), &img, 512, Method::Loop);
    assert!(
        rec.warned("Unable to shrink partition 2: don't know how to shrink xfs file systems"),
        "{:?}",
        rec.warnings()
    );
    assert!(done.shrunk.is_none() && done.swap.is_none());
    assert_eq!(layout.partitions(), before.partitions());
    assert_eq!(
        done.new_size,
        before.partition(2).unwrap().end_offset() + MIB
    );
    assert!(done.new_size < before.disk_size());
    assert_sfdisk_verifies(img.to_str().unwrap());
    let p2 = layout.partition(2).unwrap();
    run(Command::new("xfs_repair")
        .args(["-n", "-f"])
        .arg(extract_part(dir.path(), &img, p2.offset(), p2.size())));
}

/// Unmounts when dropped, so a failed assertion leaves nothing mounted.
struct LoopMount(PathBuf);

impl LoopMount {
    fn new(img: &Path, off: u64, size: u64, dir: &Path, opts: &str) -> LoopMount {
        fs::create_dir_all(dir).unwrap();
        run(Command::new("mount")
            .arg("-o")
            .arg(format!("loop,offset={off},sizelimit={size}{opts}"))
            .arg(img)
            .arg(dir));
        LoopMount(dir.to_path_buf())
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A file deleted from an xfs partition is left out of the dump with no appliance and
/// no shrink (as in a `--no-sysprep` run): its blocks are free in the AG btrees.
#[test]
fn deleted_xfs_data_is_left_out_of_the_dump() {
    use snf_disk::{SnapshotMode, Source, WorkingDisk};
    let dir = tempfile::tempdir().unwrap();
    let tree = debian_tree(dir.path(), "tree");
    let script = "label: dos\nstart=2048, size=48M, type=83\nsize=300M, type=83\n";
    let img = make_disk(
        dir.path(),
        400,
        512,
        script,
        &[(1, ext4(&tree, 4096)), (2, Fill::Xfs)],
    );
    let layout = Layout::read_file(&img, 512).unwrap();
    let p2 = layout.partition(2).unwrap();
    let kept = pseudo_random(8 << 20, 7);
    {
        let m = LoopMount::new(&img, p2.offset(), p2.size(), &dir.path().join("m"), "");
        fs::write(m.0.join("kept.bin"), &kept).unwrap();
        fs::write(m.0.join("gone.bin"), pseudo_random(64 << 20, 8)).unwrap();
        run(&mut Command::new("sync"));
        fs::remove_file(m.0.join("gone.bin")).unwrap();
    }
    let rec = Recorder::default();
    let free = shrink::free_ranges(&img, &layout, &rec);
    assert!(
        rec.details()
            .iter()
            .any(|d| d.starts_with("partition 2:") && d.contains("MiB of free xfs space left out")),
        "{:?}",
        rec.details()
    );
    let wd = WorkDir::create(Some(dir.path())).unwrap();
    let disk = WorkingDisk::open(
        &Source::examine(&img).unwrap(),
        &wd,
        SnapshotMode::Snapshot,
        &Recorder::default(),
    )
    .unwrap();
    let size = layout.disk_size();
    let allocated = |free: &[Range<u64>], name: &str| {
        let out = dir.path().join(name);
        snf_disk::dump(&disk, size, free, &out, &Recorder::default()).unwrap();
        std::os::unix::fs::MetadataExt::blocks(&fs::metadata(&out).unwrap()) * 512
    };
    let whole = allocated(&[], "whole.img");
    let holed = allocated(&free, "holed.img");
    assert!(
        whole >= holed + (64 << 20),
        "the deleted 64 MiB are still in the dump: {whole} vs {holed} bytes allocated"
    );
    let out = dir.path().join("holed.img");
    run(Command::new("xfs_repair")
        .args(["-n", "-f"])
        .arg(extract_part(dir.path(), &out, p2.offset(), p2.size())));
    let m = LoopMount::new(&out, p2.offset(), p2.size(), &dir.path().join("o"), ",ro");
    assert!(
        fs::read(m.0.join("kept.bin")).unwrap() == kept,
        "kept.bin changed"
    );
}

fn extract_part(dir: &Path, img: &Path, off: u64, size: u64) -> PathBuf {
    let out = dir.join("part.raw");
    let data = {
        let f = File::open(img).unwrap();
        let mut buf = vec![0u8; size as usize];
        f.read_exact_at(&mut buf, off).unwrap();
        buf
    };
    fs::write(&out, data).unwrap();
    out
}

#[test]
fn unclean_filesystem_is_copied_whole_and_repaired_by_extraction() {
    let dir = tempfile::tempdir().unwrap();
    let tree = debian_tree(dir.path(), "tree");
    let img = root_and_swap_disk(dir.path(), &tree);
    // As if the guest had crashed: the superblock's state is "not clean".
    debugfs_p1(&img, "ssv state 0");
    let (layout, done, _) = shrink_with(dir.path(), &img, 512, Method::Extract);
    assert!(done.shrunk.is_some());
    assert_ext_ok(&img, &layout, 1, &tree);
}

// ---- free space ----------------------------------------------------------------------

#[test]
fn free_ranges_are_the_free_ext_blocks_and_the_swap_data() {
    let dir = tempfile::tempdir().unwrap();
    let tree = debian_tree(dir.path(), "tree");
    let img = root_and_swap_disk(dir.path(), &tree);
    let layout = Layout::read_file(&img, 512).unwrap();
    let free = shrink::free_ranges(&img, &layout, &Recorder::default());
    let (p1, p2) = (layout.partition(1).unwrap(), layout.partition(2).unwrap());

    // Sorted, disjoint, inside partitions, never the table or the gap before p1.
    for w in free.windows(2) {
        assert!(w[0].end <= w[1].start);
    }
    assert!(free.iter().all(|r| r.start >= p1.offset()));
    // The swap area is free but for its header page.
    assert!(
        free.contains(&(p2.offset() + 4096..p2.end_offset())),
        "{free:?}"
    );
    // No used ext block is listed, and most of the filesystem is listed.
    let mut fs = ExtFs::open(&img, p1.offset(), false).unwrap();
    let bs = u64::from(fs.info().block_size);
    let used: Vec<Range<u64>> = fs
        .used_block_ranges()
        .unwrap()
        .into_iter()
        .map(|(b, n)| p1.offset() + b * bs..p1.offset() + (b + n) * bs)
        .collect();
    for u in &used {
        assert!(
            free.iter().all(|f| f.end <= u.start || f.start >= u.end),
            "used {u:?} listed as free"
        );
    }
    let free_in_p1: u64 = free
        .iter()
        .filter(|r| r.start < p1.end_offset())
        .map(|r| r.end - r.start)
        .sum();
    assert_eq!(free_in_p1, fs.info().free_blocks * bs);
}

#[test]
fn a_filesystem_with_a_journal_to_replay_counts_as_all_used() {
    let dir = tempfile::tempdir().unwrap();
    let tree = debian_tree(dir.path(), "tree");
    let img = root_and_swap_disk(dir.path(), &tree);
    debugfs_p1(&img, "feature needs_recovery");
    let layout = Layout::read_file(&img, 512).unwrap();
    let free = shrink::free_ranges(&img, &layout, &Recorder::default());
    let p1 = layout.partition(1).unwrap();
    assert!(free.iter().all(|r| r.start >= p1.end_offset()), "{free:?}");
}

// ---- whole runs --------------------------------------------------------------------------

/// A Debian guest on MBR (root + trailing swap) with secrets: one in /tmp (removed by
/// cleanup-tmp) and one deleted before imaging (its blocks are free but not zeroed).
fn secret_guest(dir: &Path, marker: &str) -> (PathBuf, Tree) {
    let tree = debian_tree(dir, "tree");
    let secret = format!("{marker}\n").repeat(1000);
    tree.file("/tmp/session-token", &secret);
    tree.file(
        "/root/deleted-key",
        &secret.replace(marker, &marker.to_lowercase()),
    );
    let img = root_and_swap_disk(dir, &tree);
    debugfs_p1(&img, "rm /root/deleted-key");
    (img, tree)
}

fn session_run(opts: RunOptions) -> (Session, std::sync::Arc<Recorder>) {
    let rec = std::sync::Arc::new(Recorder::default());
    let mut session = Session::new(opts, rec.clone()).unwrap();
    session
        .finish()
        .unwrap_or_else(|e| panic!("run failed: {e}"));
    (session, rec)
}

#[test]
fn a_whole_run_shrinks_and_leaks_no_deleted_secret() {
    let dir = tempfile::tempdir().unwrap();
    let marker = "SNF-SHRINK-SECRET-6b1f9e0d2c";
    let (img, tree) = secret_guest(dir.path(), marker);
    let src = fs::read(&img).unwrap();
    assert!(contains(&src, marker.as_bytes()) && contains(&src, marker.to_lowercase().as_bytes()));
    let out = dir.path().join("out.raw");
    let mut opts = RunOptions::new(&img);
    opts.tmpdir = Some(dir.path().to_path_buf());
    opts.outfile = Some(out.clone());
    let (session, rec) = session_run(opts);

    assert_eq!(session.metadata().get("SWAP"), Some("2:16"));
    let layout = Layout::read_file(&out, 512).unwrap();
    assert_eq!(layout.partitions().len(), 1);
    let len = fs::metadata(&out).unwrap().len();
    assert_eq!(len, layout.partition(1).unwrap().end_offset() + MIB);
    assert_eq!(session.written_image().unwrap().size, len);
    assert!(rec.said("Image size is"), "{:?}", rec.infos());
    assert_sfdisk_verifies(out.to_str().unwrap());
    assert_ext_ok(&out, &layout, 1, &tree);

    let bytes = fs::read(&out).unwrap();
    for secret in [marker.to_string(), marker.to_lowercase()] {
        assert!(
            !contains(&bytes, secret.as_bytes()),
            "{secret} leaked into the image"
        );
    }
    assert!(!contains(&bytes, b"SWAPPED-OUT-SECRET"));
    // The source is untouched.
    assert!(fs::read(&img).unwrap() == src);
    drop(session);
    // The output is sparse: about the data, not the partition.
    let allocated = std::os::unix::fs::MetadataExt::blocks(&fs::metadata(&out).unwrap()) * 512;
    assert!(allocated < 12 * MIB, "{allocated} bytes allocated");
    extract_is_clean(dir.path());
}

#[test]
fn with_shrink_disabled_the_size_stays_but_free_space_is_still_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let marker = "SNF-NOSHRINK-SECRET-44d0a7";
    let (img, _tree) = secret_guest(dir.path(), marker);
    let out = dir.path().join("out.raw");
    let mut opts = RunOptions::new(&img);
    opts.tmpdir = Some(dir.path().to_path_buf());
    opts.outfile = Some(out.clone());
    opts.disable_syspreps = vec!["shrink".into()];
    let (session, _) = session_run(opts);
    assert_eq!(session.metadata().get("SWAP"), None);
    assert_eq!(
        fs::metadata(&out).unwrap().len(),
        fs::metadata(&img).unwrap().len()
    );
    let bytes = fs::read(&out).unwrap();
    assert!(!contains(&bytes, marker.to_lowercase().as_bytes()));
    assert!(!contains(&bytes, b"SWAPPED-OUT-SECRET"));
    // The swap partition stays, header included.
    let layout = Layout::read_file(&out, 512).unwrap();
    assert_eq!(layout.partitions().len(), 2);
    let p2 = layout.partition(2).unwrap();
    assert_eq!(
        &bytes[(p2.offset() + 4086) as usize..(p2.offset() + 4096) as usize],
        b"SWAPSPACE2"
    );
}

#[test]
fn no_sysprep_means_no_shrink() {
    let dir = tempfile::tempdir().unwrap();
    let (img, _tree) = secret_guest(dir.path(), "SNF-NOSYSPREP-1");
    let out = dir.path().join("out.raw");
    let mut opts = RunOptions::new(&img);
    opts.tmpdir = Some(dir.path().to_path_buf());
    opts.outfile = Some(out.clone());
    opts.sysprep = false;
    let (session, _) = session_run(opts);
    assert_eq!(session.metadata().get("SWAP"), None);
    assert_eq!(
        fs::metadata(&out).unwrap().len(),
        fs::metadata(&img).unwrap().len()
    );
    assert_eq!(Layout::read_file(&out, 512).unwrap().partitions().len(), 2);
}

#[test]
fn unsupported_images_are_not_shrunk() {
    let dir = tempfile::tempdir().unwrap();
    // No operating system on the disk: unsupported.
    let tree = Tree::new(dir.path(), "tree");
    tree.file("/data/readme", "just data\n");
    let img = root_and_swap_disk(dir.path(), &tree);
    let out = dir.path().join("out.raw");
    let mut opts = RunOptions::new(&img);
    opts.tmpdir = Some(dir.path().to_path_buf());
    opts.outfile = Some(out.clone());
    opts.allow_unsupported = true;
    let (session, rec) = session_run(opts);
    assert!(session.metadata().contains("UNSUPPORTED"));
    assert!(
        rec.warned("Shrinking is disabled for unsupported images"),
        "{:?}",
        rec.warnings()
    );
    assert_eq!(session.metadata().get("SWAP"), None);
    assert_eq!(
        fs::metadata(&out).unwrap().len(),
        fs::metadata(&img).unwrap().len()
    );
    let (a, b) = (
        Layout::read_file(&img, 512).unwrap(),
        Layout::read_file(&out, 512).unwrap(),
    );
    assert_eq!(a.partitions(), b.partitions());
}

/// A hybrid MBR (`sgdisk -h 2:3`) mirrors the root being shrunk and the swap being
/// removed: after the shrink its entries match the GPT again (`sgdisk -v` clean), the
/// root's twin with the root's new size and the swap's entry gone.
#[test]
fn gpt_with_a_hybrid_mbr_keeps_it_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let (tree, img) = gpt_root_and_swap(dir.path());
    let target = img.to_str().unwrap().to_string();
    run(Command::new("sgdisk").args(["-h", "2:3"]).arg(&img));
    assert_sgdisk_verifies(&target);
    let (layout, done, _) = shrink_with(dir.path(), &img, 512, Method::Extract);
    assert_eq!(done.swap.as_deref(), Some("3:16"));
    assert_sgdisk_verifies(&target);
    let p2 = layout.partition(2).unwrap();
    let mut sector0 = [0u8; 512];
    File::open(&img)
        .unwrap()
        .read_exact_at(&mut sector0, 0)
        .unwrap();
    let entries: Vec<(u8, u64, u64)> = (0..4)
        .map(|i| {
            let e = &sector0[446 + 16 * i..462 + 16 * i];
            let le = |at: usize| u64::from(u32::from_le_bytes(e[at..at + 4].try_into().unwrap()));
            (e[4], le(8), le(12))
        })
        .filter(|e| e.0 != 0)
        .collect();
    assert!(
        entries.contains(&(0x83, p2.start, p2.sectors())),
        "the root's twin has its new size: {entries:?}"
    );
    assert_eq!(entries.len(), 2, "protective + root: {entries:?}");
    assert!(entries.iter().all(|e| e.1 + e.2 <= done.new_size / 512));
    assert_ext_ok(&img, &layout, 2, &tree);
}
