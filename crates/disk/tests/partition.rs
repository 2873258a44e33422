//! The partition-table layer against real tables made by sfdisk, sgdisk and (for
//! 4096-byte sectors) the same tools on a 4K loop device; every write-back is checked
//! by those tools.

mod common;

use std::fs::File;
use std::path::Path;
use std::process::Command;

use common::*;
use snf_disk::partition::{
    detect_sector_size, Guid, Layout, LayoutWarning, PartitionError, PartitionKind, TableKind, MIB,
};

const SECTOR: u64 = 512;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

fn truncate(path: &Path, size: u64) {
    File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(size)
        .unwrap();
}

/// Our reading of an MBR matches sfdisk's, row by row.
fn assert_matches_sfdisk(layout: &Layout, target: &str) {
    let (id, rows) = sfdisk_json(target);
    assert_eq!(
        format!("0x{:08x}", layout.mbr_disk_signature().unwrap()),
        id
    );
    let ours: Vec<_> = layout
        .partitions()
        .iter()
        .map(|p| {
            (
                p.number,
                p.start,
                p.sectors(),
                format!("{:x}", p.mbr_type),
                p.bootable,
            )
        })
        .collect();
    assert_eq!(ours, rows, "our layout vs sfdisk --json {target}");
}

#[test]
fn mbr_with_logical_partitions_matches_sfdisk() {
    let dir = tmp();
    let img = mbr_image(dir.path());
    let layout = Layout::read_file(&img, 512).unwrap();
    assert_eq!(layout.kind(), TableKind::Msdos);
    assert_eq!(layout.kind().as_str(), "msdos");
    assert!(layout.warnings().is_empty());
    assert_matches_sfdisk(&layout, img.to_str().unwrap());

    let kinds: Vec<_> = layout.partitions().iter().map(|p| p.kind).collect();
    use PartitionKind::*;
    assert_eq!(
        kinds,
        [Primary, Primary, Extended, Logical, Logical, Logical]
    );
    assert_eq!(layout.extended().unwrap().number, 3);
    assert_eq!(layout.logicals().count(), 3);
    let last = layout.last_partition().unwrap();
    assert_eq!(last.number, 7);
    assert!(last.type_is_swap());
    assert_eq!(layout.partuuid(layout.partition(5).unwrap()), "12345678-05");
    assert_eq!(
        layout.partition_by_partuuid("12345678-06").unwrap().number,
        6
    );

    // Byte lookups: inside a logical partition we get it, not its extended partition;
    // the EBR sector before it belongs to the extended partition only.
    let p6 = layout.partition(6).unwrap();
    assert_eq!(layout.partition_at_offset(p6.offset()).unwrap().number, 6);
    assert_eq!(
        layout
            .partition_at_offset(p6.end_offset() - 1)
            .unwrap()
            .number,
        6
    );
    let ebr6 = ebr_chain(&img, SECTOR, layout.extended().unwrap().start)[1];
    assert_eq!(layout.partition_at_offset(ebr6 * SECTOR).unwrap().number, 3);
    assert!(layout.partition_at_offset(0).is_none());
}

#[test]
fn mbr_rewrite_unchanged_is_byte_identical() {
    let dir = tmp();
    let img = mbr_image(dir.path());
    let before = std::fs::read(&img).unwrap();
    let mut layout = Layout::read_file(&img, 512).unwrap();
    layout.write_file(&img, 64 << 20).unwrap();
    let after = std::fs::read(&img).unwrap();
    let diff: Vec<usize> = (0..before.len())
        .filter(|&i| before[i] != after[i])
        .collect();
    assert!(
        diff.is_empty(),
        "rewriting an unchanged MBR changed bytes {diff:?}"
    );
}

#[test]
fn mbr_shrink_drops_trailing_swap_and_resizes_the_last_logical() {
    let dir = tmp();
    let img = mbr_image(dir.path());
    let target = img.to_str().unwrap();
    let (_, orig) = sfdisk_json(target);
    let mut layout = Layout::read_file(&img, 512).unwrap();

    let swap = layout.delete(7).unwrap();
    assert_eq!(swap.mbr_type, 0x82);
    let p6 = layout.partition(6).unwrap().clone();
    let new_end = p6.start + 4 * MIB / SECTOR - 1;
    layout.set_end(6, new_end).unwrap();
    assert_eq!(layout.extended().unwrap().end, new_end, "extended follows");

    let size = layout.shrunk_disk_size();
    assert_eq!(size, (new_end + 1) * SECTOR + MIB);
    assert_eq!(layout.min_disk_size(), size);
    layout.write_file(&img, size).unwrap();
    truncate(&img, size);

    assert_sfdisk_verifies(target);
    let (_, rows) = sfdisk_json(target);
    let ext = &orig[2];
    let expected = vec![
        orig[0].clone(),
        orig[1].clone(),
        (3, ext.1, new_end - ext.1 + 1, "5".to_string(), false),
        orig[3].clone(),
        (6, p6.start, 4 * MIB / SECTOR, "83".to_string(), false),
    ];
    assert_eq!(rows, expected);

    // The model was refreshed from the disk and agrees with sfdisk.
    assert_eq!(layout.disk_size(), size);
    assert_matches_sfdisk(&layout, target);
    let reread = Layout::read_file(&img, 512).unwrap();
    assert_eq!(reread.partitions(), layout.partitions());
}

#[test]
fn mbr_emptied_extended_partition_can_be_deleted() {
    let dir = tmp();
    let img = mbr_image(dir.path());
    let target = img.to_str().unwrap();
    let (_, orig) = sfdisk_json(target);
    let mut layout = Layout::read_file(&img, 512).unwrap();

    match layout.delete(3) {
        Err(PartitionError::ExtendedNotEmpty {
            number: 3,
            logicals: 3,
        }) => {}
        other => panic!("deleting a non-empty extended partition gave {other:?}"),
    }
    for n in [7, 6, 5] {
        layout.delete(n).unwrap();
    }
    // The last partition is now the empty extended one, as the shrink loop expects.
    assert_eq!(layout.last_partition().unwrap().number, 3);
    layout.write_file(&img, 64 << 20).unwrap();
    assert_sfdisk_verifies(target);
    assert_eq!(sfdisk_json(target).1, orig[..3].to_vec());

    layout.delete(3).unwrap();
    let size = layout.shrunk_disk_size();
    layout.write_file(&img, size).unwrap();
    truncate(&img, size);
    assert_sfdisk_verifies(target);
    assert_eq!(sfdisk_json(target).1, orig[..2].to_vec());
    assert_eq!(size, (orig[1].1 + orig[1].2) * SECTOR + MIB);
}

#[test]
fn mbr_deleting_the_first_logical_moves_the_chain_start() {
    let dir = tmp();
    let img = mbr_image(dir.path());
    let target = img.to_str().unwrap();
    let (_, orig) = sfdisk_json(target);
    let mut layout = Layout::read_file(&img, 512).unwrap();
    layout.delete(5).unwrap();
    // Linux numbers logical partitions in chain order: 6 and 7 become 5 and 6.
    assert_eq!(layout.partition(5).unwrap().start, orig[4].1);
    layout.write_file(&img, 64 << 20).unwrap();
    assert_sfdisk_verifies(target);
    let (_, rows) = sfdisk_json(target);
    let renumbered: Vec<_> = orig[4..]
        .iter()
        .map(|r| (r.0 - 1, r.1, r.2, r.3.clone(), r.4))
        .collect();
    assert_eq!(rows[3..].to_vec(), renumbered);
    let ext_start = orig[2].1;
    assert_eq!(ebr_chain(&img, SECTOR, ext_start)[0], ext_start);
}

#[test]
fn mbr_resizing_a_middle_logical_keeps_the_extended_partition() {
    let dir = tmp();
    let img = mbr_image(dir.path());
    let target = img.to_str().unwrap();
    let (_, orig) = sfdisk_json(target);
    let mut layout = Layout::read_file(&img, 512).unwrap();
    let p5 = layout.partition(5).unwrap().clone();
    layout.set_end(5, p5.start + 2047).unwrap();
    assert_eq!(layout.extended().unwrap().end, orig[2].1 + orig[2].2 - 1);
    // Growing it into the next EBR is refused.
    let next_ebr = ebr_chain(&img, SECTOR, orig[2].1)[1];
    assert!(matches!(
        layout.set_end(5, next_ebr),
        Err(PartitionError::Overlap { .. })
    ));
    layout.write_file(&img, 64 << 20).unwrap();
    assert_sfdisk_verifies(target);
    let (_, rows) = sfdisk_json(target);
    assert_eq!(rows[3], (5, p5.start, 2048, "83".to_string(), false));
    assert_eq!(rows[4..], orig[4..]);
}

/// Our reading of a GPT matches `sgdisk -i` for each partition.
fn assert_matches_sgdisk(layout: &Layout, target: &str) {
    for p in layout.partitions() {
        let info = sgdisk_info(target, p.number);
        assert_eq!(
            word(&info, "Partition GUID code").to_lowercase(),
            p.type_guid.unwrap().to_string()
        );
        assert_eq!(
            word(&info, "Partition unique GUID").to_lowercase(),
            p.unique_guid.unwrap().to_string()
        );
        assert_eq!(word(&info, "First sector"), p.start.to_string());
        assert_eq!(word(&info, "Last sector"), p.end.to_string());
        assert_eq!(
            word(&info, "Attribute flags"),
            format!("{:016X}", p.attributes)
        );
        assert_eq!(info["Partition name"], format!("'{}'", p.name));
    }
}

#[test]
fn gpt_matches_sgdisk() {
    let dir = tmp();
    let img = gpt_image(dir.path());
    let target = img.to_str().unwrap();
    assert_eq!(detect_sector_size(&img).unwrap(), 512);
    let layout = Layout::read_file(&img, 512).unwrap();
    assert_eq!(layout.kind().as_str(), "gpt");
    assert!(layout.warnings().is_empty(), "{:?}", layout.warnings());
    assert_eq!(layout.partitions().len(), 3);
    assert_matches_sgdisk(&layout, target);
    assert_eq!(
        layout.gpt_disk_guid().unwrap().to_string(),
        "11111111-2222-3333-4444-555555555555"
    );
    assert_eq!(
        (
            layout.gpt_first_usable().unwrap(),
            layout.gpt_last_usable().unwrap()
        ),
        sgdisk_usable(target)
    );
    assert_eq!(layout.gpt_entries_geometry(), Some((128, 128)));
    let p1 = layout.partition(1).unwrap();
    assert_eq!(p1.name, "EFI");
    assert!(
        p1.bootable,
        "attribute bit 2 is the legacy BIOS bootable flag"
    );
    assert_eq!(layout.partition(2).unwrap().name, "root fs");
    assert!(layout.partition(3).unwrap().type_is_swap());
    assert_eq!(layout.last_partition().unwrap().number, 3);
    assert_eq!(
        layout
            .partition_by_partuuid("AAAAAAAA-0000-0000-0000-000000000002")
            .unwrap()
            .number,
        2
    );
    assert_eq!(layout.mbr_disk_signature(), None);
}

#[test]
fn gpt_rewrite_unchanged_is_byte_identical() {
    let dir = tmp();
    let img = gpt_image(dir.path());
    let before = std::fs::read(&img).unwrap();
    let mut layout = Layout::read_file(&img, 512).unwrap();
    layout.write_file(&img, 64 << 20).unwrap();
    let after = std::fs::read(&img).unwrap();
    assert!(
        before == after,
        "rewriting an unchanged GPT changed the image"
    );
}

/// Deletes the trailing swap partition, halves partition 2 in place, writes the table
/// for the shrunk size and truncates the image; returns the new size.
fn shrink_gpt(img: &Path, ss: u64) -> u64 {
    let mut layout = Layout::read_file(img, ss as u32).unwrap();
    let before = layout.partition(2).unwrap().clone();
    layout.delete(3).unwrap();
    let new_end = before.start + 16 * MIB / ss - 1;
    layout.set_end(2, new_end).unwrap();
    let size = layout.shrunk_disk_size();
    assert_eq!(size, (new_end + 1) * ss + MIB);
    layout.write_file(img, size).unwrap();
    truncate(img, size);

    let after = layout.partition(2).unwrap();
    assert_eq!(after.end, new_end);
    assert_eq!(after.type_guid, before.type_guid);
    assert_eq!(after.unique_guid, before.unique_guid);
    assert_eq!(after.name, before.name);
    assert_eq!(after.attributes, before.attributes);
    assert!(layout.partition(3).is_none());
    let entry_sectors = 128 * 128 / ss;
    assert_eq!(
        layout.gpt_last_usable(),
        Some(size / ss - 2 - entry_sectors)
    );
    assert!(layout.warnings().is_empty(), "{:?}", layout.warnings());
    size
}

#[test]
fn gpt_shrink_keeps_guids_and_names_and_verifies() {
    let dir = tmp();
    let img = gpt_image(dir.path());
    let target = img.to_str().unwrap();
    let orig2 = sgdisk_info(target, 2);
    let size = shrink_gpt(&img, SECTOR);

    assert_sgdisk_verifies(target);
    let info = sgdisk_info(target, 2);
    for key in [
        "Partition GUID code",
        "Partition unique GUID",
        "Partition name",
        "First sector",
        "Attribute flags",
    ] {
        assert_eq!(info[key], orig2[key], "{key} changed");
    }
    assert_eq!(
        word(&info, "Last sector"),
        (word(&orig2, "First sector").parse::<u64>().unwrap() + 16 * 2048 - 1).to_string()
    );
    assert!(stdout(Command::new("sgdisk").args(["-i", "3", target])).contains("does not exist"));
    assert_eq!(sgdisk_usable(target).1, size / SECTOR - 34);
    // Protective MBR covers the new disk.
    let pmbr = read_bytes(&img, 446, 16);
    assert_eq!(pmbr[4], 0xee);
    assert_eq!(u32_le(&pmbr, 8), 1);
    assert_eq!(u64::from(u32_le(&pmbr, 12)), size / SECTOR - 1);
    let layout = Layout::read_file(&img, 512).unwrap();
    assert_matches_sgdisk(&layout, target);
}

#[test]
fn gpt_with_256_entries_moves_its_backup_array() {
    let dir = tmp();
    let img = blank_image(dir.path(), "gpt256.img", 64 << 20);
    let target = img.to_str().unwrap();
    run(Command::new("sgdisk")
        .args(["-S", "256"])
        .args(sgdisk_args(2048))
        .arg(&img));
    let layout = Layout::read_file(&img, 512).unwrap();
    assert_eq!(layout.gpt_entries_geometry(), Some((256, 128)));
    let mut layout2 = layout.clone();
    layout2.delete(3).unwrap();
    let size = layout2.shrunk_disk_size();
    layout2.write_file(&img, size).unwrap();
    truncate(&img, size);
    assert_sgdisk_verifies(target);
    let n = size / SECTOR;
    // 256 entries of 128 bytes = 64 sectors before the backup header.
    assert_eq!(layout2.gpt_last_usable(), Some(n - 1 - 64 - 1));
    assert_eq!(sgdisk_usable(target).1, n - 66);
    let backup = read_bytes(&img, (n - 1) * SECTOR, 92);
    assert_eq!(&backup[..8], b"EFI PART");
    assert_eq!(u64_le(&backup, 72), n - 65);
}

#[test]
fn gpt_can_be_written_for_a_larger_disk() {
    let dir = tmp();
    let img = gpt_image(dir.path());
    let target = img.to_str().unwrap();
    let mut layout = Layout::read_file(&img, 512).unwrap();
    truncate(&img, 128 << 20);
    layout.write_file(&img, 128 << 20).unwrap();
    assert_sgdisk_verifies(target);
    assert_eq!(sgdisk_usable(target).1, (128 << 20) / SECTOR - 34);
    assert!(layout.warnings().is_empty());
    assert_matches_sgdisk(&layout, target);
}

#[test]
fn truncated_gpt_image_is_read_from_its_primary_and_repaired() {
    let dir = tmp();
    let img = gpt_image(dir.path());
    let target = img.to_str().unwrap();
    let mut layout = Layout::read_file(&img, 512).unwrap();
    layout.delete(3).unwrap();
    layout.write_file(&img, 64 << 20).unwrap();
    // What the original did to non-ext filesystems: cut at last partition + 1 MiB,
    // leaving the backup header behind.
    let cut = layout.partition(2).unwrap().end_offset() + MIB;
    truncate(&img, cut);

    let mut layout = Layout::read_file(&img, 512).unwrap();
    assert_eq!(
        layout.warnings(),
        [LayoutWarning::GptBackupMissing {
            expected_lba: (64 << 20) / SECTOR - 1
        }]
    );
    assert_eq!(layout.partitions().len(), 2);
    let size = layout.shrunk_disk_size();
    assert_eq!(size, cut);
    layout.write_file(&img, size).unwrap();
    assert!(layout.warnings().is_empty());
    assert_sgdisk_verifies(target);
}

#[test]
fn gpt_4k_sectors_match_sgdisk_and_shrink_verifies() {
    let dir = tmp();
    let img = gpt_image_4k(dir.path());
    assert_eq!(detect_sector_size(&img).unwrap(), 4096);
    let layout = Layout::read_file(&img, 4096).unwrap();
    assert!(layout.warnings().is_empty(), "{:?}", layout.warnings());
    assert_eq!(layout.sector_size(), 4096);
    assert_eq!(layout.partition(1).unwrap().start, 256);
    {
        let lo = Loop::attach(&img, 4096, true);
        assert_matches_sgdisk(&layout, &lo.dev);
        assert_eq!(
            (
                layout.gpt_first_usable().unwrap(),
                layout.gpt_last_usable().unwrap()
            ),
            sgdisk_usable(&lo.dev)
        );
    }
    // Read as 512-byte sectors, the same image has no GPT where one would be.
    assert!(Layout::read_file(&img, 512).is_err());

    let size = shrink_gpt(&img, 4096);
    let lo = Loop::attach(&img, 4096, true);
    assert_sgdisk_verifies(&lo.dev);
    // 128 entries of 128 bytes are 4 sectors of 4096 bytes.
    assert_eq!(sgdisk_usable(&lo.dev).1, size / 4096 - 6);
    let layout = Layout::read_file(&img, 4096).unwrap();
    assert_matches_sgdisk(&layout, &lo.dev);
    let pmbr = read_bytes(&img, 446, 16);
    assert_eq!(u64::from(u32_le(&pmbr, 12)), size / 4096 - 1);
}

#[test]
fn mbr_4k_sectors_match_sfdisk_and_shrink_verifies() {
    let dir = tmp();
    let img = mbr_image_4k(dir.path());
    let mut layout = Layout::read_file(&img, 4096).unwrap();
    {
        let lo = Loop::attach(&img, 4096, true);
        assert_matches_sfdisk(&layout, &lo.dev);
    }
    layout.delete(7).unwrap();
    let p6 = layout.partition(6).unwrap().clone();
    layout.set_end(6, p6.start + 255).unwrap();
    let size = layout.shrunk_disk_size();
    assert_eq!(size, (p6.start + 256) * 4096 + MIB);
    layout.write_file(&img, size).unwrap();
    truncate(&img, size);
    let lo = Loop::attach(&img, 4096, true);
    assert_sfdisk_verifies(&lo.dev);
    assert_matches_sfdisk(&layout, &lo.dev);
    let (_, rows) = sfdisk_json(&lo.dev);
    assert_eq!(
        rows.last().unwrap(),
        &(6, p6.start, 256, "83".to_string(), false)
    );
}

#[test]
fn block_device_sector_size_comes_from_sysfs() {
    let dir = tmp();
    let img = blank_image(dir.path(), "blank.img", 8 << 20);
    for ss in [512u32, 4096] {
        let lo = Loop::attach(&img, ss, true);
        assert_eq!(detect_sector_size(Path::new(&lo.dev)).unwrap(), ss);
    }
}

#[test]
fn corrupt_primary_gpt_header_falls_back_to_the_backup() {
    let dir = tmp();
    let img = gpt_image(dir.path());
    let good = Layout::read_file(&img, 512).unwrap();
    flip_byte(&img, SECTOR + 40); // first usable LBA, under the header CRC
    let mut layout = Layout::read_file(&img, 512).unwrap();
    assert!(
        matches!(layout.warnings(), [LayoutWarning::GptPrimaryInvalid { reason }] if reason.contains("CRC32")),
        "{:?}",
        layout.warnings()
    );
    assert_eq!(layout.partitions(), good.partitions());
    layout.write_file(&img, 64 << 20).unwrap();
    assert!(layout.warnings().is_empty());
    assert_sgdisk_verifies(img.to_str().unwrap());
}

#[test]
fn corrupt_primary_gpt_entries_fall_back_to_the_backup() {
    let dir = tmp();
    let img = gpt_image(dir.path());
    flip_byte(&img, 2 * SECTOR + 128 + 56); // name of partition 2
    let layout = Layout::read_file(&img, 512).unwrap();
    assert!(matches!(
        layout.warnings(),
        [LayoutWarning::GptPrimaryInvalid { .. }]
    ));
    assert_eq!(layout.partition(2).unwrap().name, "root fs");
}

#[test]
fn both_gpt_headers_corrupt_is_a_header_crc_error() {
    let dir = tmp();
    let img = gpt_image(dir.path());
    flip_byte(&img, SECTOR + 40);
    flip_byte(&img, (64 << 20) - SECTOR + 40);
    match Layout::read_file(&img, 512) {
        Err(PartitionError::BadGptHeaderCrc {
            lba: 1,
            stored,
            computed,
        }) => {
            assert_ne!(stored, computed)
        }
        other => panic!("expected a header CRC error, got {other:?}"),
    }
}

#[test]
fn both_gpt_entry_arrays_corrupt_is_an_entries_crc_error() {
    let dir = tmp();
    let img = gpt_image(dir.path());
    flip_byte(&img, 2 * SECTOR + 40);
    flip_byte(&img, (64 << 20) - 33 * SECTOR + 40);
    assert!(matches!(
        Layout::read_file(&img, 512),
        Err(PartitionError::BadGptEntriesCrc { lba: 2, .. })
    ));
}

#[test]
fn corrupt_backup_gpt_is_a_warning() {
    let dir = tmp();
    let img = gpt_image(dir.path());
    flip_byte(&img, (64 << 20) - SECTOR + 40);
    let layout = Layout::read_file(&img, 512).unwrap();
    assert!(matches!(
        layout.warnings(),
        [LayoutWarning::GptBackupInvalid { lba, .. }] if *lba == (64 << 20) / SECTOR - 1
    ));
}

#[test]
fn gpt_partition_past_the_end_of_a_cut_image_is_an_error() {
    let dir = tmp();
    let img = gpt_image(dir.path());
    truncate(&img, 32 << 20); // partition 2 runs to 41 MiB
    match Layout::read_file(&img, 512) {
        Err(PartitionError::PartitionPastEnd {
            number: 2, limit, ..
        }) => {
            assert_eq!(limit, (32 << 20) / SECTOR - 1)
        }
        other => panic!("expected partition 2 past the end, got {other:?}"),
    }
}

#[test]
fn gpt_entry_past_the_last_usable_sector_is_an_error() {
    let dir = tmp();
    let img = gpt_image(dir.path());
    let last_usable = sgdisk_usable(img.to_str().unwrap()).1;
    patch_gpt_entries(&img, SECTOR, |e| {
        e[2 * 128 + 40..2 * 128 + 48].copy_from_slice(&(last_usable + 1).to_le_bytes())
    });
    match Layout::read_file(&img, 512) {
        Err(PartitionError::PartitionPastEnd {
            number: 3,
            limit,
            limit_what,
            ..
        }) => {
            assert_eq!(limit, last_usable);
            assert_eq!(limit_what, "the last usable sector");
        }
        other => panic!("expected partition 3 past the last usable sector, got {other:?}"),
    }
}

#[test]
fn overlapping_gpt_partitions_are_an_error() {
    let dir = tmp();
    let img = gpt_image(dir.path());
    let p1_end = Layout::read_file(&img, 512)
        .unwrap()
        .partition(1)
        .unwrap()
        .end;
    patch_gpt_entries(&img, SECTOR, |e| {
        e[128 + 32..128 + 40].copy_from_slice(&p1_end.to_le_bytes())
    });
    match Layout::read_file(&img, 512) {
        Err(e @ PartitionError::Overlap { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("partition 1") && msg.contains("partition 2"),
                "{msg}"
            );
        }
        other => panic!("expected an overlap, got {other:?}"),
    }
}

#[test]
fn absurd_gpt_header_values_are_errors() {
    let dir = tmp();
    let img = gpt_image(dir.path());
    // A valid CRC over an absurd entry size: the header must still be refused.
    for lba in [1, (64 << 20) / SECTOR - 1] {
        let mut h = read_bytes(&img, lba * SECTOR, 92);
        h[84..88].copy_from_slice(&100u32.to_le_bytes());
        h[16..20].fill(0);
        let crc = crc32fast::hash(&h);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        write_bytes(&img, lba * SECTOR, &h);
    }
    match Layout::read_file(&img, 512) {
        Err(PartitionError::InvalidGptHeader { lba: 1, reason }) => {
            assert!(reason.contains("entry size 100"), "{reason}")
        }
        other => panic!("expected an invalid header, got {other:?}"),
    }
}

#[test]
fn overlapping_mbr_partitions_are_an_error() {
    let dir = tmp();
    let img = mbr_image(dir.path());
    // Move partition 2's start into partition 1.
    let start1 = u32_le(&read_bytes(&img, 446, 16), 8);
    write_bytes(&img, 446 + 16 + 8, &(start1 + 100).to_le_bytes());
    assert!(matches!(
        Layout::read_file(&img, 512),
        Err(PartitionError::Overlap { .. })
    ));
}

#[test]
fn ebr_chain_loop_is_an_error() {
    let dir = tmp();
    let img = mbr_image(dir.path());
    let layout = Layout::read_file(&img, 512).unwrap();
    let ext_start = layout.extended().unwrap().start;
    let chain = ebr_chain(&img, SECTOR, ext_start);
    assert_eq!(chain.len(), 3);
    // Point the last EBR's link back at the first.
    let mut link = [0u8; 16];
    link[4] = 0x05;
    link[12..16].copy_from_slice(&1u32.to_le_bytes());
    write_bytes(&img, chain[2] * SECTOR + 446 + 16, &link);
    match Layout::read_file(&img, 512) {
        Err(PartitionError::EbrLoop { lba }) => assert_eq!(lba, ext_start),
        other => panic!("expected an EBR loop, got {other:?}"),
    }
}

#[test]
fn ebr_link_out_of_the_extended_partition_is_an_error() {
    let dir = tmp();
    let img = mbr_image(dir.path());
    let layout = Layout::read_file(&img, 512).unwrap();
    let ext = layout.extended().unwrap().clone();
    let chain = ebr_chain(&img, SECTOR, ext.start);
    let rel = (ext.sectors() + 10) as u32;
    write_bytes(&img, chain[1] * SECTOR + 446 + 16 + 8, &rel.to_le_bytes());
    match Layout::read_file(&img, 512) {
        Err(PartitionError::EbrOutOfRange { lba, .. }) => {
            assert_eq!(lba, ext.start + u64::from(rel))
        }
        other => panic!("expected an out-of-range EBR link, got {other:?}"),
    }
}

#[test]
fn ebr_without_signature_is_an_error() {
    let dir = tmp();
    let img = mbr_image(dir.path());
    let ext_start = Layout::read_file(&img, 512)
        .unwrap()
        .extended()
        .unwrap()
        .start;
    let chain = ebr_chain(&img, SECTOR, ext_start);
    write_bytes(&img, chain[1] * SECTOR + 510, &[0, 0]);
    match Layout::read_file(&img, 512) {
        Err(PartitionError::BadMbrSignature { lba, found: 0 }) => assert_eq!(lba, chain[1]),
        other => panic!("expected a bad EBR signature, got {other:?}"),
    }
}

#[test]
fn unpartitioned_disks_have_no_partition_table() {
    let dir = tmp();
    let zero = blank_image(dir.path(), "zero.img", 8 << 20);
    let ext4 = blank_image(dir.path(), "ext4.img", 8 << 20);
    run(Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4"])
        .arg(&ext4));
    let fat = blank_image(dir.path(), "fat.img", 8 << 20);
    run(Command::new("mkfs.fat").arg(&fat));
    for img in [&zero, &ext4, &fat] {
        let err = Layout::read_file(img, 512).unwrap_err();
        assert!(err.is_no_partition_table(), "{}: {err}", img.display());
        assert!(err.to_string().starts_with("no partition table found"));
    }
    let tiny = blank_image(dir.path(), "tiny.img", 100);
    assert!(Layout::read_file(&tiny, 512)
        .unwrap_err()
        .is_no_partition_table());
    assert!(matches!(
        Layout::read_file(&zero, 1000),
        Err(PartitionError::UnsupportedSectorSize(1000))
    ));
}

#[test]
fn empty_msdos_label_has_no_partitions() {
    let dir = tmp();
    let img = blank_image(dir.path(), "empty.img", 8 << 20);
    sfdisk_script(img.to_str().unwrap(), "label: dos\n");
    let layout = Layout::read_file(&img, 512).unwrap();
    assert_eq!(layout.kind(), TableKind::Msdos);
    assert!(layout.partitions().is_empty());
    assert!(layout.last_partition().is_none());
    assert_eq!(layout.payload_end(), SECTOR);
}

#[test]
fn write_refuses_sizes_that_cut_partitions() {
    let dir = tmp();
    let img = gpt_image(dir.path());
    let mut layout = Layout::read_file(&img, 512).unwrap();
    let p3_end = layout.partition(3).unwrap().end;
    assert!(matches!(
        layout.write_file(&img, (p3_end + 1) * SECTOR),
        Err(PartitionError::PartitionPastEnd { number: 3, .. })
    ));
    assert!(matches!(
        layout.write_file(&img, (64 << 20) - 100),
        Err(PartitionError::UnalignedDiskSize { .. })
    ));
    // Nothing was written.
    assert_sgdisk_verifies(img.to_str().unwrap());
    assert!(matches!(
        layout.set_end(2, 10),
        Err(PartitionError::InvalidChange { number: 2, .. })
    ));
    assert!(matches!(
        layout.delete(9),
        Err(PartitionError::NoSuchPartition(9))
    ));
    let guid: Guid = "aaaaaaaa-0000-0000-0000-000000000003".parse().unwrap();
    assert_eq!(layout.partition(3).unwrap().unique_guid, Some(guid));
}

/// Reading needs no privileges: the same read as an unprivileged user.
#[test]
fn reading_an_image_works_without_root() {
    let dir = tmp();
    let img = gpt_image(dir.path());
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::set_permissions(&img, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let exe = std::env::current_exe().unwrap();
    let out = run(Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&exe)
        .args([
            "--exact",
            "unprivileged_read_child",
            "--ignored",
            "--nocapture",
        ])
        .env("SNF_PARTITION_TEST_IMAGE", &img));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1 passed"), "{text}");
}

#[test]
#[ignore = "run by reading_an_image_works_without_root as an unprivileged user"]
fn unprivileged_read_child() {
    let img = std::env::var_os("SNF_PARTITION_TEST_IMAGE").expect("image path in the environment");
    assert_ne!(
        rustix::process::geteuid().as_raw(),
        0,
        "must run unprivileged"
    );
    let img = Path::new(&img);
    assert_eq!(detect_sector_size(img).unwrap(), 512);
    let layout = Layout::read_file(img, 512).unwrap();
    assert_eq!(layout.partitions().len(), 3);
}

#[test]
fn gpt_without_protective_mbr_is_read_and_gets_one_on_write() {
    let dir = tmp();
    let img = gpt_image(dir.path());
    write_bytes(&img, 0, &[0u8; 512]);
    let mut layout = Layout::read_file(&img, 512).unwrap();
    assert_eq!(layout.warnings(), [LayoutWarning::GptNoProtectiveMbr]);
    assert_eq!(layout.partitions().len(), 3);
    layout.write_file(&img, 64 << 20).unwrap();
    assert!(layout.warnings().is_empty());
    assert_sgdisk_verifies(img.to_str().unwrap());
    let pmbr = read_bytes(&img, 446, 16);
    assert_eq!((pmbr[4], u32_le(&pmbr, 8)), (0xee, 1));
    assert_eq!(u64::from(u32_le(&pmbr, 12)), (64 << 20) / SECTOR - 1);
}

#[test]
fn hybrid_mbr_entries_survive_a_gpt_shrink() {
    let dir = tmp();
    let img = gpt_image(dir.path());
    let target = img.to_str().unwrap();
    // Mirror partition 1 in the MBR beside the protective entry.
    run(Command::new("sgdisk").args(["-h", "1"]).arg(&img));
    let before: Vec<u8> = read_bytes(&img, 446, 64);
    let mut layout = Layout::read_file(&img, 512).unwrap();
    assert_eq!(layout.kind(), TableKind::Gpt);
    layout.delete(3).unwrap();
    let size = layout.shrunk_disk_size();
    layout.write_file(&img, size).unwrap();
    truncate(&img, size);
    assert_sgdisk_verifies(target);
    let after = read_bytes(&img, 446, 64);
    assert_eq!(
        before, after,
        "the hybrid MBR's entries end inside the new disk"
    );
    let p1 = layout.partition(1).unwrap();
    let mirrored = (0..4)
        .map(|i| &after[16 * i..16 * i + 16])
        .find(|e| e[4] != 0xee && e[4] != 0)
        .expect("a hybrid entry");
    assert_eq!(u64::from(u32_le(mirrored, 8)), p1.start);
}

#[test]
fn empty_first_ebr_that_links_on_is_accepted_and_normalised() {
    let dir = tmp();
    let img = mbr_image(dir.path());
    let target = img.to_str().unwrap();
    let (_, orig) = sfdisk_json(target);
    let ext_start = orig[2].1;
    // Clear the first EBR's data entry, keep its link: Linux then sees two logicals.
    write_bytes(&img, ext_start * SECTOR + 446, &[0u8; 16]);
    let mut layout = Layout::read_file(&img, 512).unwrap();
    let logicals: Vec<_> = layout.logicals().map(|p| (p.number, p.start)).collect();
    assert_eq!(logicals, [(5, orig[4].1), (6, orig[5].1)]);
    layout.write_file(&img, 64 << 20).unwrap();
    assert_sfdisk_verifies(target);
    let (_, rows) = sfdisk_json(target);
    let expected: Vec<_> = orig[4..]
        .iter()
        .map(|r| (r.0 - 1, r.1, r.2, r.3.clone(), r.4))
        .collect();
    assert_eq!(rows[3..].to_vec(), expected);
    assert_eq!(ebr_chain(&img, SECTOR, ext_start).len(), 2);
}

/// The four sector-0 entries as (boot, type, start, size).
fn mbr_entries(img: &Path) -> Vec<(u8, u8, u64, u64)> {
    let raw = read_bytes(img, 446, 64);
    (0..4)
        .map(|i| {
            let e = &raw[16 * i..16 * i + 16];
            (
                e[0],
                e[4],
                u64::from(u32_le(e, 8)),
                u64::from(u32_le(e, 12)),
            )
        })
        .collect()
}

/// A hybrid MBR that mirrors the partition being shrunk: its twin entry must shrink
/// with it (sgdisk -v reports a mismatch otherwise), the protective entry stays in its
/// slot, and a mirrored partition that is deleted loses its entry.
#[test]
fn hybrid_mbr_entries_follow_a_shrunk_gpt() {
    let dir = tmp();
    let img = gpt_image(dir.path());
    let target = img.to_str().unwrap();
    run(Command::new("sgdisk").args(["-h", "1:2:3"]).arg(&img));
    assert_sgdisk_verifies(target);
    let before = mbr_entries(&img);
    assert_eq!(before.iter().filter(|e| e.1 == 0xee).count(), 1);
    let size = shrink_gpt(&img, SECTOR);
    assert_sgdisk_verifies(target);
    let layout = Layout::read_file(&img, 512).unwrap();
    let after = mbr_entries(&img);
    for (slot, (old, new)) in before.iter().zip(&after).enumerate() {
        match old.1 {
            0 => assert_eq!(new, old, "slot {slot}"),
            0xee => {
                assert_eq!(new.1, 0xee, "the protective entry keeps slot {slot}");
                assert!(new.2 + new.3 <= size / SECTOR, "{new:?}");
            }
            _ => match layout.partitions().iter().find(|p| p.start == old.2) {
                Some(p) => assert_eq!(
                    (new.0, new.1, new.2, new.3),
                    (old.0, old.1, p.start, p.sectors()),
                    "slot {slot} mirrors partition {}",
                    p.number
                ),
                // Partition 3 was deleted, and lay past the new end anyway.
                None => assert_eq!(new.1, 0, "slot {slot} still describes {old:?}"),
            },
        }
    }
}

/// A protective entry that covers only part of the disk (some tools write it that
/// way) is made to cover the disk that is written.
#[test]
fn short_protective_mbr_covers_the_written_disk() {
    let dir = tmp();
    let img = gpt_image(dir.path());
    let target = img.to_str().unwrap();
    let mut entry = read_bytes(&img, 446, 16);
    entry[12..16].copy_from_slice(&4096u32.to_le_bytes());
    write_bytes(&img, 446, &entry);
    let size = shrink_gpt(&img, SECTOR);
    assert_sgdisk_verifies(target);
    assert_eq!(mbr_entries(&img)[0], (0, 0xee, 1, size / SECTOR - 1));
}

/// A protective entry in slot 2 (slot 1 empty) is still a GPT disk, and stays in its
/// slot when the table is written.
#[test]
fn protective_entry_in_another_slot_is_a_gpt() {
    let dir = tmp();
    let img = gpt_image(dir.path());
    let target = img.to_str().unwrap();
    let entry = read_bytes(&img, 446, 16);
    write_bytes(&img, 446 + 16, &entry);
    write_bytes(&img, 446, &[0u8; 16]);
    let layout = Layout::read_file(&img, 512).unwrap();
    assert_eq!(layout.kind(), TableKind::Gpt);
    assert_eq!(layout.partitions().len(), 3);
    let size = shrink_gpt(&img, SECTOR);
    assert_sgdisk_verifies(target);
    let after = mbr_entries(&img);
    assert_eq!(after[0].1, 0);
    assert_eq!(after[1], (0, 0xee, 1, size / SECTOR - 1));
}
