//! The LVM2 layer against volume groups made by the real LVM tools (lvm2 on loop
//! devices over the image's partitions, see `snf_testkit::lvm`); every write-back is
//! checked by `vgck`, `pvck` and `lvs`.

use std::os::unix::fs::FileExt;
use std::path::Path;

use snf_disk::lvm::{self, LvmError, PvDevice, SegmentKind};
use snf_testkit::fixture::{Disk, MIB};
use snf_testkit::lvm::Lvm;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

fn devices(disk: &Disk, parts: &[u32]) -> Vec<PvDevice> {
    parts
        .iter()
        .map(|&n| PvDevice {
            id: n,
            offset: disk.offset(n),
            size: disk.size(n),
        })
        .collect()
}

fn attach(disk: &Disk, parts: &[u32]) -> Lvm {
    let ranges: Vec<(u64, u64)> = parts
        .iter()
        .map(|&n| (disk.offset(n), disk.size(n)))
        .collect();
    Lvm::attach(disk.path(), &ranges)
}

/// Our extents as (image offset, length), to compare with what `lvs` says.
fn ours(vg: &lvm::VolumeGroup, lv: &str) -> Vec<(u64, u64)> {
    vg.lv_extents(lv)
        .unwrap()
        .iter()
        .map(|e| (e.image_offset, e.len))
        .collect()
}

/// Merge adjacent (offset, len) pieces, as `lv_extents` does.
fn merged(v: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (o, l) in v {
        match out.last_mut() {
            Some(last) if last.0 + last.1 == o => last.1 += l,
            _ => out.push((o, l)),
        }
    }
    out
}

/// A disk with a 1 MiB gap, partition 1 (16 MiB, plain) and partition 2 (the rest, a
/// PV) holding VG `vg0` with root (24M), var (8M, then root grows by 8M: two segments)
/// and home (12M).
fn root_var_home(dir: &Path) -> Disk {
    let disk = Disk::create(
        dir.join("disk.img"),
        100 * MIB,
        "label: dos\nstart=2048, size=16M, type=83\nsize=80M, type=8e\n",
    );
    let lvm = attach(&disk, &[2]);
    lvm.pvcreate(&[0], &[]);
    lvm.vgcreate("vg0", &[0], &[]);
    lvm.lvcreate("vg0", "root", "24M", &[]);
    lvm.lvcreate("vg0", "var", "8M", &[]);
    lvm.lvextend("vg0", "root", "+8M", &[]);
    lvm.lvcreate("vg0", "home", "12M", &[]);
    lvm.vgck("vg0");
    disk
}

#[test]
fn scan_single_pv_and_lv_extents_match_lvs() {
    let dir = tmp();
    let disk = root_var_home(dir.path());
    let scan = lvm::scan(disk.path(), &devices(&disk, &[1, 2])).unwrap();
    assert!(scan.warnings.is_empty(), "{:?}", scan.warnings);
    assert_eq!(scan.vgs.len(), 1);
    let vg = &scan.vgs[0];
    assert_eq!(vg.name, "vg0");
    assert_eq!(vg.extent_size, 4 * MIB);
    assert_eq!(vg.pvs.len(), 1);
    let pv = &vg.pvs[0];
    assert_eq!(pv.device, Some(2));
    assert_eq!(pv.offset, disk.offset(2));
    assert_eq!(pv.dev_size, disk.size(2));
    let names: Vec<&str> = vg.lvs.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["root", "var", "home"]);
    let root = vg.lv("root").unwrap();
    assert_eq!(root.extent_count, 8);
    assert_eq!(root.segments.len(), 2);
    assert!(root.visible);
    assert!(
        matches!(&root.segments[1].kind, SegmentKind::Linear { pv, start_pe: 8 } if pv == "pv0")
    );

    let lvm = attach(&disk, &[2]);
    for lv in ["root", "var", "home"] {
        assert_eq!(ours(vg, lv), merged(lvm.lv_ranges("vg0", lv)), "LV {lv}");
    }
    let sizes: Vec<(String, u64)> = lvm.lvs("vg0").into_iter().map(|r| (r.lv, r.size)).collect();
    for (lv, size) in sizes {
        assert_eq!(vg.lv(&lv).unwrap().extent_count * vg.extent_size, size);
    }
    assert_eq!(vg.mapper_name("root"), "vg0-root");
    assert!(matches!(
        vg.lv_extents("nope"),
        Err(LvmError::NoSuchLv { .. })
    ));
}

#[test]
fn vg_over_two_partitions_and_a_missing_pv() {
    let dir = tmp();
    let disk = Disk::create(
        dir.path().join("disk.img"),
        80 * MIB,
        "label: gpt\nstart=2048, size=30M\nsize=30M\n",
    );
    let lvm = attach(&disk, &[1, 2]);
    lvm.pvcreate(&[0, 1], &[]);
    lvm.vgcreate("my-vg", &[0, 1], &[]);
    lvm.lvcreate("my-vg", "small", "8M", &[0]);
    // Bigger than what is left on the first PV: it spans both.
    lvm.lvcreate("my-vg", "big-lv", "32M", &[0, 1]);
    let theirs = lvm.lv_ranges("my-vg", "big-lv");
    drop(lvm);

    let scan = lvm::scan(disk.path(), &devices(&disk, &[1, 2])).unwrap();
    let vg = &scan.vgs[0];
    assert_eq!(vg.name, "my-vg");
    assert_eq!(vg.pvs.len(), 2);
    let ext = vg.lv_extents("big-lv").unwrap();
    assert_eq!(ext.len(), 2, "{ext:?}");
    let mut on: Vec<u32> = ext.iter().map(|e| e.device).collect();
    on.sort();
    assert_eq!(on, [1, 2]);
    assert_eq!(ours(vg, "big-lv"), merged(theirs));
    assert_eq!(vg.mapper_name("big-lv"), "my--vg-big--lv");

    // Only the first partition: the VG is there, the second PV is not.
    let scan = lvm::scan(disk.path(), &devices(&disk, &[1])).unwrap();
    let vg = &scan.vgs[0];
    assert_eq!(vg.pvs.iter().filter(|p| p.device.is_none()).count(), 1);
    assert!(vg.lv_extents("small").is_ok());
    let err = vg.lv_extents("big-lv").unwrap_err();
    assert!(matches!(err, LvmError::MissingPv { .. }), "{err}");
    assert!(err.to_string().starts_with("LV my-vg/big-lv: "), "{err}");
}

#[test]
fn thin_lvs_are_refused_by_name() {
    let dir = tmp();
    let disk = Disk::create(
        dir.path().join("disk.img"),
        80 * MIB,
        "label: dos\nstart=2048, type=8e\n",
    );
    let lvm = attach(&disk, &[1]);
    lvm.pvcreate(&[0], &[]);
    lvm.vgcreate("vg0", &[0], &[]);
    lvm.lvcreate("vg0", "root", "8M", &[]);
    lvm.thin("vg0", "pool", "20M", "thin", "16M");
    lvm.vgck("vg0");
    let rows = lvm.lvs("vg0");
    assert!(
        rows.iter().any(|r| r.lv == "thin" && r.segtype == "thin"),
        "{rows:?}"
    );
    drop(lvm);

    let scan = lvm::scan(disk.path(), &devices(&disk, &[1])).unwrap();
    let vg = &scan.vgs[0];
    assert!(vg.lv_extents("root").is_ok());
    let err = vg.lv_extents("thin").unwrap_err();
    assert_eq!(err.to_string(), "LV vg0/thin: unsupported LV type thin");
    let err = vg.lv_extents("pool").unwrap_err();
    assert_eq!(
        err.to_string(),
        "LV vg0/pool: unsupported LV type thin-pool"
    );
    assert!(!vg.lv("pool_tdata").unwrap().visible);
    // The pool's data is a hidden linear LV: its bytes are known.
    assert!(vg.lv_extents("pool_tdata").is_ok());
}

#[test]
fn whole_disk_pv() {
    let dir = tmp();
    let img = dir.path().join("disk.img");
    snf_testkit::fixture::sparse_file(&img, 40 * MIB);
    let lvm = Lvm::attach(&img, &[(0, 40 * MIB)]);
    lvm.pvcreate(&[0], &[]);
    lvm.vgcreate("vg0", &[0], &[]);
    lvm.lvcreate("vg0", "root", "12M", &[]);
    let theirs = lvm.lv_ranges("vg0", "root");
    drop(lvm);
    let dev = PvDevice {
        id: 0,
        offset: 0,
        size: 40 * MIB,
    };
    let scan = lvm::scan(&img, &[dev]).unwrap();
    assert_eq!(scan.vgs[0].pvs[0].device, Some(0));
    assert_eq!(ours(&scan.vgs[0], "root"), merged(theirs));
}

/// The metadata area header and text location of copy `n` (0-based) on a PV device.
fn copy_location(img: &Path, dev: &PvDevice, n: usize) -> (u64, u64) {
    let f = std::fs::File::open(img).unwrap();
    let mut sectors = vec![0u8; lvm::ondisk::LABEL_SCAN];
    f.read_exact_at(&mut sectors, dev.offset).unwrap();
    let label = lvm::ondisk::read_label(&sectors).unwrap().unwrap();
    let area = label.mdas[n];
    let mut h = vec![0u8; 512];
    f.read_exact_at(&mut h, dev.offset + area.offset).unwrap();
    let header = lvm::ondisk::read_mda_header(&h, area).unwrap();
    (
        dev.offset + area.offset,
        dev.offset + area.offset + header.locns[0].offset,
    )
}

fn flip(img: &Path, at: u64) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .read(true)
        .open(img)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    b[0] ^= 0x20;
    f.write_all_at(&b, at).unwrap();
}

#[test]
fn damaged_first_copy_uses_the_second_and_none_is_an_error() {
    let dir = tmp();
    let disk = Disk::create(
        dir.path().join("disk.img"),
        80 * MIB,
        "label: dos\nstart=2048, type=8e\n",
    );
    let lvm = attach(&disk, &[1]);
    lvm.pvcreate(&[0], &["--pvmetadatacopies", "2"]);
    lvm.vgcreate("vg0", &[0], &[]);
    lvm.lvcreate("vg0", "root", "12M", &[]);
    drop(lvm);
    let devs = devices(&disk, &[1]);
    let (_, text1) = copy_location(disk.path(), &devs[0], 0);
    let (_, text2) = copy_location(disk.path(), &devs[0], 1);
    // A byte of the VG name in the first copy's text.
    flip(disk.path(), text1 + 1);
    let scan = lvm::scan(disk.path(), &devs).unwrap();
    assert_eq!(scan.vgs.len(), 1);
    assert_eq!(scan.vgs[0].name, "vg0");
    assert_eq!(
        scan.warnings,
        ["PV on partition 1: metadata copy 1: the metadata text has a bad checksum; using copy 2"]
    );
    flip(disk.path(), text2 + 1);
    let err = lvm::scan(disk.path(), &devs).unwrap_err();
    assert!(matches!(err, LvmError::NoValidMetadata { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("PV on partition 1: no valid LVM metadata"),
        "{err}"
    );
}

#[test]
fn not_a_pv_is_skipped() {
    let dir = tmp();
    let disk = Disk::create(
        dir.path().join("disk.img"),
        20 * MIB,
        "label: dos\nstart=2048, type=83\n",
    );
    let scan = lvm::scan(disk.path(), &devices(&disk, &[1])).unwrap();
    assert!(scan.vgs.is_empty() && scan.warnings.is_empty());
}
