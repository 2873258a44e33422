//! BSD disklabels nested in MBR partitions, written by util-linux fdisk and read back
//! by our parser; fdisk's own listing of the label is the reference.

use std::fs::File;
use std::path::Path;

use snf_disk::partition::disklabel::{read_labels, DisklabelError, Flavour, FS_BSDFFS, FS_SWAP};
use snf_disk::partition::Layout;
use snf_testkit::bsdlabel::{fdisk_bsd_label, fdisk_bsd_slices, label_offset, set_duid, BsdSlice};
use snf_testkit::fixture::{sfdisk, sparse_file, write_at};

const MIB: u64 = 1 << 20;

fn disk(dir: &Path, script: &str, slices: &[BsdSlice]) -> std::path::PathBuf {
    let img = dir.join("disk.img");
    sparse_file(&img, 64 * MIB);
    sfdisk(&img, script);
    fdisk_bsd_label(&img, slices);
    img
}

fn labels(img: &Path) -> Vec<Result<snf_disk::partition::disklabel::Disklabel, DisklabelError>> {
    let layout = Layout::read_file(img, 512).expect("the MBR reads");
    read_labels(&mut File::open(img).unwrap(), &layout)
}

const OPENBSD: &[BsdSlice] = &[
    BsdSlice {
        letter: 'a',
        start: 4096,
        sectors: 40_000,
        fstype: FS_BSDFFS,
    },
    BsdSlice {
        letter: 'b',
        start: 44_096,
        sectors: 16_384,
        fstype: FS_SWAP,
    },
    BsdSlice {
        letter: 'e',
        start: 60_480,
        sectors: 20_000,
        fstype: FS_BSDFFS,
    },
];

/// Our slices are fdisk's used ones, in label order, with Linux's numbers.
fn assert_matches_fdisk(img: &Path, got: &snf_disk::partition::disklabel::Disklabel) {
    let used: Vec<(char, u64, u64)> = fdisk_bsd_slices(img)
        .into_iter()
        .filter(|s| s.3 != "unused")
        .map(|s| (s.0, s.1, s.2))
        .collect();
    let ours: Vec<(char, u64, u64)> = got
        .slices
        .iter()
        .map(|s| (s.letter, s.start, s.sectors))
        .collect();
    assert_eq!(ours, used);
}

#[test]
fn openbsd_label_slices_are_numbered_as_linux_does() {
    let dir = tempfile::tempdir().unwrap();
    let img = disk(
        dir.path(),
        "label: dos\nstart=2048, size=100000, type=a6, bootable\n",
        OPENBSD,
    );
    let all = labels(&img);
    assert_eq!(all.len(), 1);
    let l = all[0].as_ref().expect("the label reads");
    assert_eq!(
        (l.parent, l.flavour, l.duid.clone()),
        (1, Flavour::OpenBsd, None)
    );
    assert_matches_fdisk(&img, l);
    let numbers: Vec<(char, u32, u8)> = l
        .slices
        .iter()
        .map(|s| (s.letter, s.number, s.fstype))
        .collect();
    assert_eq!(
        numbers,
        vec![('a', 5, FS_BSDFFS), ('b', 6, FS_SWAP), ('e', 7, FS_BSDFFS)]
    );

    set_duid(
        &img,
        label_offset(2048),
        [0x3e, 0xb7, 0xf9, 0xda, 0x87, 0x5c, 0xb9, 0xee],
    );
    let l = labels(&img).remove(0).expect("the label still reads");
    assert_eq!(l.duid.as_deref(), Some("3eb7f9da875cb9ee"));
}

#[test]
fn netbsd_slices_come_after_the_logical_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let img = disk(
        dir.path(),
        "label: dos\nstart=2048, size=100000, type=a9\nstart=110000, size=20000, type=5\nstart=112048, size=8000, type=83\n",
        &OPENBSD[..2],
    );
    let l = labels(&img).remove(0).expect("the label reads");
    assert_eq!(l.flavour, Flavour::NetBsd);
    assert_matches_fdisk(&img, &l);
    let numbers: Vec<(char, u32)> = l.slices.iter().map(|s| (s.letter, s.number)).collect();
    assert_eq!(numbers, vec![('a', 6), ('b', 7)]);
}

#[test]
fn freebsd_label_on_mbr_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let img = disk(
        dir.path(),
        "label: dos\nstart=2048, size=100000, type=a5\n",
        &OPENBSD[..1],
    );
    let l = labels(&img).remove(0).expect("the label reads");
    assert_eq!(l.flavour, Flavour::FreeBsd);
    assert_matches_fdisk(&img, &l);
    assert_eq!(l.slices[0].number, 5);
}

#[test]
fn a_corrupt_or_missing_label_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let img = disk(
        dir.path(),
        "label: dos\nstart=2048, size=100000, type=a6\n",
        OPENBSD,
    );
    let at = label_offset(2048);
    // One bit of a slice's size: the checksum no longer matches.
    write_at(&img, at + 148, &[0x41]);
    let err = labels(&img)
        .remove(0)
        .expect_err("a bad checksum is refused");
    assert!(
        matches!(err, DisklabelError::Invalid { parent: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("checksum"), "{err}");
    // A count of entries past what fits in the sector.
    write_at(&img, at + 138, &[0xff, 0xff]);
    let err = labels(&img)
        .remove(0)
        .expect_err("an absurd count is refused");
    assert!(err.to_string().contains("65535 partitions"), "{err}");
    // No label at all.
    write_at(&img, at, &[0u8; 512]);
    let err = labels(&img).remove(0).expect_err("no label");
    assert!(
        matches!(
            err,
            DisklabelError::Missing {
                parent: 1,
                mbr_type: 0xa6
            }
        ),
        "{err}"
    );
}

#[test]
fn disks_without_bsd_partitions_have_no_labels() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("plain.img");
    sparse_file(&img, 16 * MIB);
    sfdisk(&img, "label: dos\nstart=2048, type=83\n");
    assert!(labels(&img).is_empty());
}
