//! Shrinking a disk whose last partition is an LVM2 PV made by the real tools: the last
//! LV's ext4 shrunk, the LV reduced, the PV compacted and shrunk with its partition;
//! checked by vgck, pvck, lvs, e2fsck -fn and the files read back.

mod common;

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use image_creator::shrink::{self, Method, ShrinkOptions};
use snf_disk::lvm::{self, PvDevice};
use snf_disk::partition::{Layout, MIB};
use snf_disk::WorkDir;
use snf_guestfs::{ExtFs, GuestFs};
use snf_testkit::fixture::{
    assert_ext_clean, assert_sfdisk_verifies, mkswap_at, pseudo_random, Disk, Mke2fs,
};
use snf_testkit::lvm::Lvm;
use snf_testkit::report::Recorder;

use common::Tree;

fn home_tree(base: &Path) -> Tree {
    let t = Tree::new(base, "home");
    fs::write(t.root.join("big.bin"), pseudo_random(3 << 20, 7)).unwrap();
    for i in 0..30 {
        t.file(
            &format!("/alice/f{i}"),
            &format!("line {i}\n").repeat(i + 1),
        );
    }
    t
}

/// The first (only) piece of LV `lv` of VG `vg` in `img` whose PV is partition 2.
fn lv_offset(img: &Path, layout: &Layout, vg: &str, lv: &str) -> (u64, u64) {
    let devs: Vec<PvDevice> = layout
        .partitions()
        .iter()
        .map(|p| PvDevice {
            id: p.number,
            offset: p.offset(),
            size: p.size(),
        })
        .collect();
    let scan = lvm::scan(img, &devs).unwrap();
    let g = scan.vgs.iter().find(|g| g.name == vg).unwrap();
    let e = g.lv_extents(lv).unwrap();
    assert_eq!(e.len(), 1, "LV {lv}: {e:?}");
    (e[0].image_offset, e[0].len)
}

#[test]
fn last_pv_partition_is_shrunk_with_its_last_lv() {
    let dir = tempfile::tempdir().unwrap();
    let root = Tree::new(dir.path(), "root");
    root.linux_base("/dev/mapper/deb--vg-root / ext4 defaults 0 1\n");
    let home = home_tree(dir.path());
    let disk = Disk::create(
        dir.path().join("disk.img"),
        200 * MIB,
        "label: dos\nstart=2048, size=16M, type=83, bootable\nsize=180M, type=8e\n",
    );
    disk.ext(1, &Mke2fs::ext4().block_size(1024));
    let lvm = Lvm::attach(disk.path(), &[(disk.offset(2), disk.size(2))]);
    lvm.pvcreate(&[0], &[]);
    lvm.vgcreate("deb-vg", &[0], &[]);
    lvm.lvcreate("deb-vg", "root", "40M", &[]);
    lvm.lvcreate("deb-vg", "old", "8M", &[]);
    lvm.lvcreate("deb-vg", "swap_1", "16M", &[]);
    lvm.lvcreate("deb-vg", "home", "80M", &[]);
    // A gap in the allocation for the compaction to close.
    lvm.run("lvremove", &["-f", "deb-vg/old"]);
    let root_at = lvm.lv_ranges("deb-vg", "root")[0];
    let swap_at = lvm.lv_ranges("deb-vg", "swap_1")[0];
    let home_at = lvm.lv_ranges("deb-vg", "home")[0];
    drop(lvm);
    let img = disk.path().to_path_buf();
    Mke2fs::ext4().tree(&root.root).make(&img, root_at.0, "40M");
    mkswap_at(&img, swap_at.0, swap_at.1, None);
    Mke2fs::ext4().tree(&home.root).make(&img, home_at.0, "80M");

    let mut layout = Layout::read_file(&img, 512).unwrap();
    let before = layout.partition(2).unwrap().size();
    let workdir = WorkDir::create(Some(dir.path())).unwrap();
    let rec = Recorder::default();
    let opts = ShrinkOptions {
        workdir: &workdir,
        method: Some(Method::Extract),
    };
    let done = shrink::shrink(&img, &mut layout, &opts, &rec).unwrap();
    OpenOptions::new()
        .write(true)
        .open(&img)
        .unwrap()
        .set_len(done.new_size)
        .unwrap();
    drop(workdir);

    let fs = done.shrunk.as_ref().expect("home shrunk");
    assert_eq!(fs.fs, "ext4");
    assert!(fs.new_bytes < fs.old_bytes);
    let p2 = layout.partition(2).unwrap().clone();
    assert_eq!(p2.size(), fs.partition_bytes);
    assert!(p2.size() < before, "{} >= {before}", p2.size());
    assert_sfdisk_verifies(img.to_str().unwrap());

    // The tools agree, on the partition as it is now.
    let lvm = Lvm::attach(&img, &[(p2.offset(), p2.size())]);
    lvm.vgck("deb-vg");
    lvm.pvck(0);
    let rows = lvm.lvs("deb-vg");
    let size = |lv: &str| rows.iter().find(|r| r.lv == lv).map(|r| r.size);
    assert_eq!(size("root"), Some(40 * MIB));
    assert_eq!(size("swap_1"), Some(16 * MIB));
    assert_eq!(size("old"), None);
    let home_size = size("home").unwrap();
    assert!(
        home_size < 80 * MIB && home_size >= fs.new_bytes,
        "{rows:?}"
    );
    let (pv_size, _) = lvm.pv_size(0);
    assert_eq!(pv_size, p2.size());
    drop(lvm);

    // Every LV's content survived: filesystems clean, files unchanged, swap intact.
    let (root_off, _) = lv_offset(&img, &layout, "deb-vg", "root");
    assert_ext_clean(&img, root_off, "root LV");
    let (home_off, home_len) = lv_offset(&img, &layout, "deb-vg", "home");
    assert_eq!(home_len, home_size);
    assert_ext_clean(&img, home_off, "home LV");
    let fs = ExtFs::open(&img, home_off, false).unwrap();
    let mut guest = GuestFs::new(Box::new(fs), "test");
    for path in ["big.bin", "alice/f0", "alice/f29"] {
        let want = fs::read(home.root.join(path)).unwrap();
        let got = guest.read(&Path::new("/").join(path)).unwrap();
        assert!(want == got, "/{path} changed on the home LV");
    }
    let (swap_off, _) = lv_offset(&img, &layout, "deb-vg", "swap_1");
    let mut sig = [0u8; 10];
    fs::File::open(&img)
        .unwrap()
        .read_exact_at(&mut sig, swap_off + 4096 - 10)
        .unwrap();
    assert_eq!(&sig, b"SWAPSPACE2");
    assert!(rec.warnings().is_empty(), "{:?}", rec.warnings());
}

/// A swap LV last on the PV is kept as it is and passed over: the root before it is the
/// last filesystem, and is shrunk; the gap before the swap LV closes and the PV shrinks.
/// A thin pool before it stays where it is.
#[test]
fn swap_lv_last_is_kept_and_the_pv_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Disk::create(
        dir.path().join("disk.img"),
        120 * MIB,
        "label: gpt\nstart=2048, size=100M\n",
    );
    let lvm = Lvm::attach(disk.path(), &[(disk.offset(1), disk.size(1))]);
    lvm.pvcreate(&[0], &[]);
    lvm.vgcreate("vg0", &[0], &[]);
    lvm.lvcreate("vg0", "root", "16M", &[]);
    lvm.thin("vg0", "pool", "8M", "thin", "16M");
    lvm.lvcreate("vg0", "old", "12M", &[]);
    lvm.lvcreate("vg0", "swap", "8M", &[]);
    lvm.run("lvremove", &["-f", "vg0/old"]);
    let root_at = lvm.lv_ranges("vg0", "root")[0];
    let swap_at = lvm.lv_ranges("vg0", "swap")[0];
    drop(lvm);
    let img = disk.path().to_path_buf();
    Mke2fs::ext4().make(&img, root_at.0, "16M");
    mkswap_at(&img, swap_at.0, swap_at.1, None);

    let mut layout = Layout::read_file(&img, 512).unwrap();
    let workdir = WorkDir::create(Some(dir.path())).unwrap();
    let rec = Recorder::default();
    let opts = ShrinkOptions {
        workdir: &workdir,
        method: None,
    };
    let done = shrink::shrink(&img, &mut layout, &opts, &rec).unwrap();
    OpenOptions::new()
        .write(true)
        .open(&img)
        .unwrap()
        .set_len(done.new_size)
        .unwrap();
    assert!(
        done.shrunk.is_some(),
        "the root LV before the swap LV is the last filesystem"
    );
    assert!(
        rec.said("LV vg0/swap is swap space: kept as it is"),
        "{:?}",
        rec.infos()
    );
    let p1 = layout.partition(1).unwrap().clone();
    assert!(p1.size() < 60 * MIB, "{}", p1.size());

    let lvm = Lvm::attach(&img, &[(p1.offset(), p1.size())]);
    lvm.vgck("vg0");
    lvm.pvck(0);
    let rows = lvm.lvs("vg0");
    let size = |lv: &str| rows.iter().find(|r| r.lv == lv).map(|r| r.size);
    assert_eq!(size("swap"), Some(8 * MIB));
    assert_eq!(size("thin"), Some(16 * MIB));
    assert_eq!(lvm.pv_size(0).0, p1.size());
    drop(lvm);
    let (root_off, _) = lv_offset(&img, &layout, "vg0", "root");
    assert_ext_clean(&img, root_off, "root LV");
    let (swap_off, _) = lv_offset(&img, &layout, "vg0", "swap");
    let mut sig = [0u8; 10];
    fs::File::open(&img)
        .unwrap()
        .read_exact_at(&mut sig, swap_off + 4096 - 10)
        .unwrap();
    assert_eq!(&sig, b"SWAPSPACE2");
}

/// A VG over two partitions whose root LV spans both: shrinking the root frees the
/// last PV entirely, which shrinks to its metadata; both PVs get the new metadata.
#[test]
fn vg_over_two_partitions_is_shrunk_on_the_last() {
    let dir = tempfile::tempdir().unwrap();
    let root = Tree::new(dir.path(), "root");
    root.linux_base("/dev/mapper/vg0-root / ext4 defaults 0 1\n");
    let disk = Disk::create(
        dir.path().join("disk.img"),
        120 * MIB,
        "label: gpt\nstart=2048, size=40M\nsize=60M\n",
    );
    let lvm = Lvm::attach(
        disk.path(),
        &[
            (disk.offset(1), disk.size(1)),
            (disk.offset(2), disk.size(2)),
        ],
    );
    lvm.pvcreate(&[0, 1], &[]);
    lvm.vgcreate("vg0", &[0, 1], &[]);
    lvm.lvcreate("vg0", "root", "36M", &[0]);
    lvm.lvextend("vg0", "root", "+40M", &[1]);
    drop(lvm);
    let img = disk.path().to_path_buf();
    // The filesystem goes in through a file: the LV is in two pieces.
    let mut layout = Layout::read_file(&img, 512).unwrap();
    let devs: Vec<PvDevice> = [1, 2]
        .iter()
        .map(|&n| PvDevice {
            id: n,
            offset: disk.offset(n),
            size: disk.size(n),
        })
        .collect();
    let vg = lvm::scan(&img, &devs).unwrap().vgs.remove(0);
    let pieces = vg.lv_extents("root").unwrap();
    assert_eq!(pieces.len(), 2);
    let fs_file = dir.path().join("root.ext4");
    let total: u64 = pieces.iter().map(|e| e.len).sum();
    Mke2fs::ext4()
        .tree(&root.root)
        .make(&fs_file, 0, &format!("{}k", total / 1024));
    let data = fs::read(&fs_file).unwrap();
    let out = OpenOptions::new().write(true).open(&img).unwrap();
    let mut at = 0usize;
    for e in &pieces {
        out.write_all_at(&data[at..at + e.len as usize], e.image_offset)
            .unwrap();
        at += e.len as usize;
    }
    drop(out);

    let workdir = WorkDir::create(Some(dir.path())).unwrap();
    let rec = Recorder::default();
    let opts = ShrinkOptions {
        workdir: &workdir,
        method: None,
    };
    let done = shrink::shrink(&img, &mut layout, &opts, &rec).unwrap();
    OpenOptions::new()
        .write(true)
        .open(&img)
        .unwrap()
        .set_len(done.new_size)
        .unwrap();
    let fs = done.shrunk.as_ref().expect("root shrunk");
    assert!(fs.new_bytes < 36 * MIB, "{fs:?}");
    let p2 = layout.partition(2).unwrap().clone();
    assert!(p2.size() < 8 * MIB, "{}", p2.size());

    let lvm = Lvm::attach(
        &img,
        &[(disk.offset(1), disk.size(1)), (p2.offset(), p2.size())],
    );
    lvm.vgck("vg0");
    lvm.pvck(0);
    lvm.pvck(1);
    assert_eq!(lvm.pv_size(1).0, p2.size());
    drop(lvm);
    let (root_off, _) = lv_offset(&img, &layout, "vg0", "root");
    assert_ext_clean(&img, root_off, "root LV");
    assert!(rec.warnings().is_empty(), "{:?}", rec.warnings());
}

/// Free space inside a VG is found like free space in partitions: the VG's free
/// extents, the free blocks of an ext4 LV, a swap LV but its header. Punching all of it
/// leaves every LV and the metadata intact.
#[test]
fn free_ranges_inside_a_vg() {
    let dir = tempfile::tempdir().unwrap();
    let home = home_tree(dir.path());
    let disk = Disk::create(
        dir.path().join("disk.img"),
        100 * MIB,
        "label: dos\nstart=2048, type=8e\n",
    );
    let lvm = Lvm::attach(disk.path(), &[(disk.offset(1), disk.size(1))]);
    lvm.pvcreate(&[0], &[]);
    lvm.vgcreate("vg0", &[0], &[]);
    lvm.lvcreate("vg0", "home", "40M", &[]);
    lvm.lvcreate("vg0", "swap", "8M", &[]);
    let home_at = lvm.lv_ranges("vg0", "home")[0];
    let swap_at = lvm.lv_ranges("vg0", "swap")[0];
    drop(lvm);
    let img = disk.path().to_path_buf();
    Mke2fs::ext4().tree(&home.root).make(&img, home_at.0, "40M");
    mkswap_at(&img, swap_at.0, swap_at.1, None);
    // Garbage in the VG's free extents.
    let secret_at = swap_at.0 + swap_at.1 + 3 * MIB;
    snf_testkit::fixture::write_at(&img, secret_at, b"FREE-EXTENT-SECRET");

    let layout = Layout::read_file(&img, 512).unwrap();
    let rec = Recorder::default();
    let free = shrink::free_ranges(&img, &layout, &rec);
    let inside = |at: u64| free.iter().any(|r| r.contains(&at));
    assert!(inside(secret_at));
    assert!(inside(swap_at.0 + 4096) && !inside(swap_at.0 + 4095));
    let in_home: u64 = free
        .iter()
        .filter(|r| r.start >= home_at.0 && r.end <= home_at.0 + home_at.1)
        .map(|r| r.end - r.start)
        .sum();
    assert!(in_home > 20 * MIB, "{in_home}");
    assert!(!inside(disk.offset(1)), "the PV label is not free");
    for w in free.windows(2) {
        assert!(w[0].end <= w[1].start, "{free:?}");
    }

    let f = OpenOptions::new().write(true).open(&img).unwrap();
    for r in &free {
        snf_disk::punch_hole(&f, r.clone()).unwrap();
    }
    drop(f);
    assert_ext_clean(&img, home_at.0, "home LV");
    let fs = ExtFs::open(&img, home_at.0, false).unwrap();
    let mut guest = GuestFs::new(Box::new(fs), "test");
    let want = fs::read(home.root.join("big.bin")).unwrap();
    assert!(guest.read(Path::new("/big.bin")).unwrap() == want);
    let lvm = Lvm::attach(&img, &[(disk.offset(1), disk.size(1))]);
    lvm.vgck("vg0");
    lvm.pvck(0);
}
