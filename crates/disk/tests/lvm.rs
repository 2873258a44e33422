//! The LVM2 layer against volume groups made by the real LVM tools (lvm2 on loop
//! devices over the image's partitions, see `snf_testkit::lvm`); every write-back is
//! checked by `vgck`, `pvck` and `lvs`.

use std::os::unix::fs::FileExt;
use std::path::Path;

use snf_disk::lvm::{self, LvmError, PvDevice, SegmentKind};
use snf_testkit::fixture::{assert_e2fsck_clean, pseudo_random, Disk, Mke2fs, MIB};
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

    // Writing back repairs the damaged copy, as vgck --updatemetadata would.
    let saved = std::fs::read(disk.path()).unwrap();
    let mut vg = scan.vgs[0].clone();
    vg.write(disk.path()).unwrap();
    let again = lvm::scan(disk.path(), &devs).unwrap();
    assert!(again.warnings.is_empty(), "{:?}", again.warnings);
    let lvm = attach(&disk, &[1]);
    lvm.vgck("vg0");
    lvm.pvck(0);
    drop(lvm);
    std::fs::write(disk.path(), saved).unwrap();

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

/// Fill LV `lv` (through our extents) with `pattern(seed)`, leaving its second MiB a
/// hole so sparseness is checked too; returns what it holds.
fn fill(img: &Path, vg: &lvm::VolumeGroup, lv: &str, seed: u64) -> Vec<u8> {
    let len: u64 = vg.lv_extents(lv).unwrap().iter().map(|e| e.len).sum();
    let mut data = pseudo_random(len as usize, seed);
    data[MIB as usize..2 * MIB as usize].fill(0);
    let f = std::fs::OpenOptions::new().write(true).open(img).unwrap();
    let mut at = 0usize;
    for e in vg.lv_extents(lv).unwrap() {
        f.write_all_at(&data[at..at + e.len as usize], e.image_offset)
            .unwrap();
        at += e.len as usize;
    }
    // The hole: punched, not written zeros.
    let first = vg.lv_extents(lv).unwrap()[0];
    snf_disk::punch_hole(&f, first.image_offset + MIB..first.image_offset + 2 * MIB).unwrap();
    data
}

/// What LV `lv` holds, read through our extents.
fn read_lv(img: &Path, vg: &lvm::VolumeGroup, lv: &str) -> Vec<u8> {
    let f = std::fs::File::open(img).unwrap();
    let mut out = Vec::new();
    for e in vg.lv_extents(lv).unwrap() {
        let mut b = vec![0u8; e.len as usize];
        f.read_exact_at(&mut b, e.image_offset).unwrap();
        out.extend_from_slice(&b);
    }
    out
}

/// Bytes of `img` allocated on the disk.
fn allocated(img: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(img).unwrap().blocks() * 512
}

#[test]
fn reduce_remove_compact_resize_and_write_agree_with_the_tools() {
    let dir = tmp();
    let disk = root_var_home(dir.path());
    let img = disk.path();
    let devs = devices(&disk, &[2]);
    let mut vg = lvm::scan(img, &devs).unwrap().vgs.remove(0);
    // pv0: root 0-5, var 6-7, root 8-9, home 10-12.
    let home = fill(img, &vg, "home", 1);
    let root = fill(img, &vg, "root", 2);
    let before = allocated(img);

    vg.reduce_lv("root", 5).unwrap();
    vg.remove_lv("var").unwrap();
    assert_eq!(vg.used_pe_end("pv0"), 13);
    let base = vg.pvs[0].offset + vg.pvs[0].pe_start;
    let ext = vg.extent_size;
    let pe_count = vg.pvs[0].pe_count;
    assert_eq!(
        vg.free_ranges(),
        [
            base + 5 * ext..base + 10 * ext,
            base + 13 * ext..base + pe_count * ext
        ]
    );
    let moves = vg.compact("pv0");
    assert_eq!(
        moves,
        [lvm::ExtentMove {
            pv: "pv0".into(),
            from_pe: 10,
            to_pe: 5,
            count: 3
        }]
    );
    assert_eq!(vg.used_pe_end("pv0"), 8);
    let pe_start = vg.pvs[0].pe_start;
    let new_size = pe_start + 8 * vg.extent_size;
    assert_eq!(vg.min_pv_size("pv0"), Some(new_size));
    vg.resize_pv("pv0", new_size).unwrap();
    assert_eq!(vg.pvs[0].pe_count, 8);
    assert!(vg.free_ranges().is_empty());
    lvm::apply_moves(img, &vg, &moves).unwrap();
    let seqno = vg.seqno;
    vg.write(img).unwrap();
    assert_eq!(vg.seqno, seqno + 1);

    assert_eq!(read_lv(img, &vg, "home"), home);
    assert_eq!(read_lv(img, &vg, "root"), root[..20 * MIB as usize]);
    // The hole in home's first MiB moved as a hole (written zeros would add 1 MiB);
    // the vacated source was punched.
    assert!(
        allocated(img) < before + MIB / 2,
        "{} > {before}",
        allocated(img)
    );

    // Read back by us and by the tools, the partition shrunk to the PV's new size.
    let again = lvm::scan(img, &devs).unwrap();
    assert!(again.warnings.is_empty(), "{:?}", again.warnings);
    assert_eq!(again.vgs[0].seqno, seqno + 1);
    assert_eq!(
        again.vgs[0].lv_extents("home").unwrap(),
        vg.lv_extents("home").unwrap()
    );
    let lvm = Lvm::attach(img, &[(disk.offset(2), new_size)]);
    lvm.vgck("vg0");
    lvm.pvck(0);
    let rows = lvm.lvs("vg0");
    let mut got: Vec<(String, u64, String)> = rows
        .into_iter()
        .map(|r| (r.lv, r.size, r.pe_ranges))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("home".to_string(), 12 * MIB, "0:5-7".to_string()),
            ("root".to_string(), 20 * MIB, "0:0-4".to_string())
        ]
    );
    assert_eq!(lvm.pv_size(0), (new_size, 8));
}

#[test]
fn compact_splits_around_fixed_extents_and_moves_a_tail_metadata_area() {
    let dir = tmp();
    let disk = Disk::create(
        dir.path().join("disk.img"),
        120 * MIB,
        "label: dos\nstart=2048, type=8e\n",
    );
    let lvm = attach(&disk, &[1]);
    lvm.pvcreate(&[0], &["--pvmetadatacopies", "2"]);
    lvm.vgcreate("vg0", &[0], &[]);
    // pv0: gap 0-2 (removed below), thin pool meta 3, pool data 4-8, root 9-12, home 13-18
    lvm.lvcreate("vg0", "gap", "12M", &[]);
    lvm.thin("vg0", "pool", "20M", "thin", "16M");
    lvm.lvcreate("vg0", "root", "16M", &[]);
    lvm.lvcreate("vg0", "home", "24M", &[]);
    drop(lvm);
    let img = disk.path();
    let devs = devices(&disk, &[1]);
    let mut vg = lvm::scan(img, &devs).unwrap().vgs.remove(0);
    let home_at = vg.lv_extents("home").unwrap()[0].image_offset;
    Mke2fs::ext4().make(img, home_at, "24M");
    let root = fill(img, &vg, "root", 3);

    // Thin LVs and the pool's parts cannot be edited.
    assert!(matches!(
        vg.reduce_lv("thin", 1),
        Err(LvmError::UnsupportedLvType { .. })
    ));
    let err = vg.remove_lv("pool_tdata").unwrap_err();
    assert_eq!(err.to_string(), "LV vg0/pool_tdata: LV pool uses it");
    assert!(vg.reduce_lv("root", 5).is_err());
    assert!(vg.reduce_lv("root", 0).is_err());

    vg.remove_lv("gap").unwrap();
    let moves = vg.compact("pv0");
    // The pool's hidden linear LVs move too; nothing is left above PE 15.
    assert_eq!(vg.used_pe_end("pv0"), 16);
    assert!(!moves.is_empty());
    let used = vg.used_pe_end("pv0");
    let tail_mda = 1 << 20;
    let new_size = vg.pvs[0].pe_start + used * vg.extent_size + tail_mda;
    assert_eq!(vg.min_pv_size("pv0"), Some(new_size));
    assert!(vg
        .resize_pv("pv0", vg.pvs[0].pe_start + used * vg.extent_size)
        .is_err());
    vg.resize_pv("pv0", new_size).unwrap();
    lvm::apply_moves(img, &vg, &moves).unwrap();
    vg.write(img).unwrap();

    assert_eq!(read_lv(img, &vg, "root"), root);
    let home_at = vg.lv_extents("home").unwrap()[0].image_offset;
    assert_e2fsck_clean(img, home_at, "home after compaction");
    let again = lvm::scan(img, &devs).unwrap();
    assert!(again.warnings.is_empty(), "{:?}", again.warnings);

    let lvm = Lvm::attach(img, &[(disk.offset(1), new_size)]);
    lvm.vgck("vg0");
    lvm.pvck(0);
    let (size, pe_count) = lvm.pv_size(0);
    assert_eq!((size, pe_count), (new_size, used));
    let out = lvm.run(
        "pvs",
        &[
            "--noheadings",
            "-o",
            "pv_mda_count,pv_mda_used_count",
            lvm.dev(0),
        ],
    );
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["2", "2"],
        "{out}"
    );
    let sizes: Vec<(String, u64)> = lvm.lvs("vg0").into_iter().map(|r| (r.lv, r.size)).collect();
    for (lv, size) in [("root", 16 * MIB), ("home", 24 * MIB), ("thin", 16 * MIB)] {
        assert!(sizes.contains(&(lv.to_string(), size)), "{lv}: {sizes:?}");
    }
    assert!(!sizes.iter().any(|(lv, _)| lv == "gap"));
}

#[test]
fn many_writes_wrap_around_the_metadata_buffer() {
    let dir = tmp();
    let disk = root_var_home(dir.path());
    let img = disk.path();
    let devs = devices(&disk, &[2]);
    let mut vg = lvm::scan(img, &devs).unwrap().vgs.remove(0);
    let start = vg.seqno;
    // About 2.5 KiB a copy in a 1 MiB area: more than once around.
    for _ in 0..900 {
        vg.write(img).unwrap();
    }
    let again = lvm::scan(img, &devs).unwrap();
    assert!(again.warnings.is_empty(), "{:?}", again.warnings);
    assert_eq!(again.vgs[0].seqno, start + 900);
    let lvm = attach(&disk, &[2]);
    lvm.vgck("vg0");
    lvm.pvck(0);
    assert_eq!(lvm.lvs("vg0").len(), 4);
}

/// The fuzz target's seeds (fuzz/make-corpus.sh writes them by hand, CRCs included)
/// are PVs this layer reads: the fuzzer starts from inside the format.
#[test]
fn fuzz_seeds_are_valid_pvs() {
    let corpus = snf_testkit::workspace_root().join("fuzz/corpus/lvm");
    let mut seen = 0;
    for entry in std::fs::read_dir(&corpus).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        let dir = tmp();
        let img = dir.path().join("pv.img");
        let size = u64::from(u16::from_le_bytes([data[0], data[1]])) * 1024;
        snf_testkit::fixture::sparse_file(&img, size);
        let mut rest = &data[2..];
        while rest.len() >= 4 {
            let sector = u64::from(u16::from_le_bytes([rest[0], rest[1]]));
            let len = usize::from(u16::from_le_bytes([rest[2], rest[3]]));
            snf_testkit::fixture::write_at(&img, sector * 512, &rest[4..4 + len]);
            rest = &rest[4 + len..];
        }
        let dev = PvDevice {
            id: 1,
            offset: 0,
            size,
        };
        let scan = lvm::scan(&img, &[dev]).unwrap();
        assert!(scan.warnings.is_empty(), "{:?}", scan.warnings);
        let vg = &scan.vgs[0];
        assert_eq!(vg.lv_extents("root").unwrap().len(), 2);
        let mut vg = vg.clone();
        vg.write(&img).unwrap();
        seen += 1;
    }
    assert_eq!(seen, 2);
}
