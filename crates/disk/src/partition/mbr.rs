//! MBR (DOS) partition tables: four primary slots in sector 0, an extended partition
//! holding a chain of EBRs, each describing one logical partition.
//!
//! EBR addressing: entry 0 of an EBR gives the logical partition's start relative to
//! that EBR; entry 1 links to the next EBR, relative to the extended partition's start.

use std::collections::HashSet;
use std::io::{Read, Seek, Write};

use super::{
    check_overlaps, read_at, write_at, Layout, Partition, PartitionError, PartitionKind,
    MBR_EXTENDED_TYPES,
};

/// Type id of the protective MBR entry that announces a GPT.
pub(super) const PROTECTIVE: u8 = 0xee;

/// Bound on the EBR chain: far more logical partitions than any tool creates, few
/// enough that a crafted chain costs nothing to walk.
const MAX_EBRS: usize = 1024;

const TABLE: usize = 446;
const SIGNATURE: [u8; 2] = [0x55, 0xaa];

/// One 16-byte MBR/EBR entry, decoded.
#[derive(Debug, Clone, Copy)]
pub(super) struct RawEntry {
    pub boot: u8,
    pub typ: u8,
    pub start: u32,
    pub size: u32,
    pub bytes: [u8; 16],
}

impl RawEntry {
    fn parse(sector: &[u8], slot: usize) -> RawEntry {
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&sector[TABLE + 16 * slot..TABLE + 16 * slot + 16]);
        RawEntry {
            boot: bytes[0],
            typ: bytes[4],
            start: u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]),
            size: u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]),
            bytes,
        }
    }

    /// Unused slots: type 0 or no sectors (Linux ignores both).
    pub(super) fn is_empty(&self) -> bool {
        self.typ == 0 || self.size == 0
    }

    fn is_extended(&self) -> bool {
        MBR_EXTENDED_TYPES.contains(&self.typ)
    }
}

/// What sector 0 holds.
pub(super) enum Sector0 {
    /// A plausible MBR: boot signature present and every boot flag 0x00 or 0x80.
    Mbr([RawEntry; 4]),
    /// No MBR; the reason, for the "no partition table" error.
    None(String),
}

pub(super) fn classify(sector0: &[u8; 512]) -> Sector0 {
    if sector0[510..512] != SIGNATURE {
        let reason = if sector0.iter().all(|&b| b == 0) {
            "sector 0 is empty".to_string()
        } else {
            format!(
                "sector 0 has no MBR boot signature (found 0x{:02x}{:02x}, expected 0x55aa)",
                sector0[510], sector0[511]
            )
        };
        return Sector0::None(reason);
    }
    let entries = [0, 1, 2, 3].map(|i| RawEntry::parse(sector0, i));
    if let Some(i) = entries.iter().position(|e| e.boot & 0x7f != 0) {
        // A filesystem boot sector (FAT, NTFS) also ends in 0x55AA; its code in place of
        // the table gives impossible boot flags, which is how Linux tells them apart.
        return Sector0::None(format!(
            "sector 0 has a boot signature but entry {} has boot flag 0x{:02x} (a filesystem boot sector?)",
            i + 1,
            entries[i].boot
        ));
    }
    if entries.iter().all(RawEntry::is_empty) {
        if let Some(fs) = filesystem_boot_sector(sector0) {
            return Sector0::None(format!(
                "sector 0 is a {fs} boot sector: the disk holds a filesystem, not a partition table"
            ));
        }
    }
    Sector0::Mbr(entries)
}

/// The filesystem whose boot sector this is, if it carries one of the identifiers
/// FAT, exFAT and NTFS put there.
fn filesystem_boot_sector(s: &[u8; 512]) -> Option<&'static str> {
    if &s[3..11] == b"NTFS    " {
        return Some("NTFS");
    }
    if &s[3..11] == b"EXFAT   " {
        return Some("exFAT");
    }
    let jump = s[0] == 0xeb && s[2] == 0x90 || s[0] == 0xe9;
    let bytes_per_sector = u16::from_le_bytes([s[11], s[12]]);
    let bpb = matches!(bytes_per_sector, 512 | 1024 | 2048 | 4096);
    let fat_id = &s[54..57] == b"FAT" || &s[82..87] == b"FAT32";
    (jump && bpb && fat_id).then_some("FAT")
}

pub(super) fn disk_signature(sector0: &[u8; 512]) -> u32 {
    u32::from_le_bytes([sector0[440], sector0[441], sector0[442], sector0[443]])
}

fn new_partition(
    number: u32,
    kind: PartitionKind,
    start: u64,
    e: &RawEntry,
    sector_size: u32,
    ebr_lba: u64,
) -> Partition {
    Partition {
        number,
        start,
        end: start + u64::from(e.size) - 1,
        kind,
        mbr_type: e.typ,
        bootable: e.boot == 0x80,
        type_guid: None,
        unique_guid: None,
        name: String::new(),
        attributes: 0,
        sector_size,
        ebr_lba,
        mbr_raw: Some(e.bytes),
    }
}

/// Reads the primary, extended and logical partitions.
pub(super) fn read<R: Read + Seek + ?Sized>(
    dev: &mut R,
    entries: &[RawEntry; 4],
    sector_size: u32,
    disk_size: u64,
) -> Result<Vec<Partition>, PartitionError> {
    let ss = u64::from(sector_size);
    let disk_sectors = disk_size / ss;
    let mut parts = Vec::new();
    let mut extended: Option<Partition> = None;
    for (slot, e) in entries.iter().enumerate() {
        if e.is_empty() {
            continue;
        }
        let number = slot as u32 + 1;
        if e.start == 0 {
            return Err(PartitionError::PartitionBeforeStart {
                number,
                start: 0,
                first: 1,
            });
        }
        let kind = if e.is_extended() {
            PartitionKind::Extended
        } else {
            PartitionKind::Primary
        };
        let p = new_partition(number, kind, u64::from(e.start), e, sector_size, 0);
        if kind == PartitionKind::Extended {
            if let Some(first) = &extended {
                return Err(PartitionError::InvalidMbr {
                    lba: 0,
                    reason: format!(
                        "more than one extended partition ({} and {number})",
                        first.number
                    ),
                });
            }
            extended = Some(p.clone());
        }
        parts.push(p);
    }
    let Some(ext) = extended else {
        return Ok(parts);
    };
    if ext.end >= disk_sectors {
        return Err(PartitionError::PartitionPastEnd {
            number: ext.number,
            end: ext.end,
            limit: disk_sectors.saturating_sub(1),
            limit_what: "the end of the disk",
        });
    }

    let mut visited = HashSet::new();
    let mut ebr = ext.start;
    let mut number = 5u32;
    loop {
        if !visited.insert(ebr) {
            return Err(PartitionError::EbrLoop { lba: ebr });
        }
        if visited.len() > MAX_EBRS {
            return Err(PartitionError::InvalidMbr {
                lba: ebr,
                reason: format!("the EBR chain is longer than {MAX_EBRS} records"),
            });
        }
        let mut sector = [0u8; 512];
        read_at(dev, ebr * ss, &mut sector, disk_size, "an EBR")?;
        if sector[510..512] != SIGNATURE {
            return Err(PartitionError::BadMbrSignature {
                lba: ebr,
                found: u16::from_le_bytes([sector[510], sector[511]]),
            });
        }
        let entries = [0, 1, 2, 3].map(|i| RawEntry::parse(&sector, i));
        let data = entries.iter().find(|e| !e.is_empty() && !e.is_extended());
        let link = entries.iter().find(|e| !e.is_empty() && e.is_extended());
        if let Some(d) = data {
            if d.start == 0 {
                return Err(PartitionError::InvalidMbr {
                    lba: ebr,
                    reason: format!("logical partition {number} starts on its own EBR"),
                });
            }
            let start = ebr + u64::from(d.start);
            // Some tools leave the first EBR empty and link on; the model (and a
            // write-back) describes the first logical partition from the first EBR.
            let owner = if number == 5 { ext.start } else { ebr };
            let p = new_partition(number, PartitionKind::Logical, start, d, sector_size, owner);
            if p.end > ext.end {
                return Err(PartitionError::OutsideExtended {
                    what: p.describe(),
                    extended: ext.number,
                });
            }
            parts.push(p);
            number += 1;
        }
        let Some(l) = link else { break };
        let next = ext.start + u64::from(l.start);
        if next > ext.end {
            return Err(PartitionError::EbrOutOfRange {
                lba: next,
                reason: format!(
                    "past the end of extended partition {} (sector {}), linked from the EBR at sector {ebr}",
                    ext.number, ext.end
                ),
            });
        }
        ebr = next;
    }
    Ok(parts)
}

/// MBR-specific invariants: 32-bit fields, logical partitions and their EBRs inside the
/// extended partition and clear of each other, the chain starting at the extended
/// partition's first sector.
pub(super) fn validate(layout: &Layout) -> Result<(), PartitionError> {
    let fits = |v: u64| v <= u64::from(u32::MAX);
    let too_large = |p: &Partition, what: &str, v: u64| PartitionError::TooLargeForMbr {
        number: p.number,
        reason: format!("{what} {v} exceeds the 32-bit MBR field"),
    };
    for p in layout.partitions() {
        if p.kind == PartitionKind::Logical {
            continue;
        }
        if !fits(p.start) {
            return Err(too_large(p, "first sector", p.start));
        }
        if !fits(p.sectors()) {
            return Err(too_large(p, "sector count", p.sectors()));
        }
    }
    let ext = layout.extended();
    let logicals: Vec<&Partition> = layout.logicals().collect();
    let Some(ext) = ext else {
        if let Some(l) = logicals.first() {
            return Err(PartitionError::InvalidChange {
                number: l.number,
                reason: "logical partition without an extended partition".into(),
            });
        }
        return Ok(());
    };
    let mut spans = Vec::with_capacity(logicals.len() * 2);
    for (i, l) in logicals.iter().enumerate() {
        if i == 0 && l.ebr_lba != ext.start {
            return Err(PartitionError::InvalidMbr {
                lba: l.ebr_lba,
                reason: format!(
                    "the first EBR is not at the start of extended partition {} (sector {})",
                    ext.number, ext.start
                ),
            });
        }
        let inside = |a: u64, b: u64| a >= ext.start && b <= ext.end;
        if !inside(l.start, l.end) {
            return Err(PartitionError::OutsideExtended {
                what: l.describe(),
                extended: ext.number,
            });
        }
        if !inside(l.ebr_lba, l.ebr_lba) {
            return Err(PartitionError::OutsideExtended {
                what: format!("the EBR of partition {} (sector {})", l.number, l.ebr_lba),
                extended: ext.number,
            });
        }
        if l.start <= l.ebr_lba {
            return Err(PartitionError::InvalidMbr {
                lba: l.ebr_lba,
                reason: format!(
                    "logical partition {} does not start after its EBR",
                    l.number
                ),
            });
        }
        let rel = l.start - l.ebr_lba;
        if !fits(rel) {
            return Err(too_large(l, "offset from its EBR", rel));
        }
        if !fits(l.sectors()) {
            return Err(too_large(l, "sector count", l.sectors()));
        }
        spans.push((l.start, l.end, l.describe()));
        spans.push((
            l.ebr_lba,
            l.ebr_lba,
            format!("the EBR of partition {} (sector {})", l.number, l.ebr_lba),
        ));
    }
    check_overlaps(&mut spans)
}

/// CHS address of `lba` with the conventional 255 heads × 63 sectors geometry;
/// addresses past cylinder 1023 get the customary 1023/254/63 marker.
fn chs(lba: u64) -> [u8; 3] {
    const HEADS: u64 = 255;
    const SECTORS: u64 = 63;
    if lba >= 1024 * HEADS * SECTORS {
        return [0xfe, 0xff, 0xff];
    }
    let c = lba / (HEADS * SECTORS);
    let h = (lba / SECTORS) % HEADS;
    let s = lba % SECTORS + 1;
    [
        h as u8,
        (s as u8) | (((c >> 2) & 0xc0) as u8),
        (c & 0xff) as u8,
    ]
}

/// Fills a 16-byte entry whose LBA fields are `start` (relative to sector `base`: the
/// EBR or extended partition for logical entries, 0 in sector 0) and `size`. CHS fields
/// address absolute sectors and are recomputed only when the LBA fields change, so an
/// unchanged entry stays byte-identical to what its tool wrote.
pub(super) fn put_entry(e: &mut [u8], boot: bool, typ: u8, start: u32, size: u32, base: u64) {
    let old_start = u32::from_le_bytes([e[8], e[9], e[10], e[11]]);
    let old_size = u32::from_le_bytes([e[12], e[13], e[14], e[15]]);
    if old_start != start || old_size != size {
        let first = base + u64::from(start);
        e[1..4].copy_from_slice(&chs(first));
        e[5..8].copy_from_slice(&chs(first + u64::from(size.max(1)) - 1));
    }
    e[0] = if boot { 0x80 } else { 0 };
    e[4] = typ;
    e[8..12].copy_from_slice(&start.to_le_bytes());
    e[12..16].copy_from_slice(&size.to_le_bytes());
}

/// Sector 0's entries and signature set from the layout, boot code kept.
pub(super) fn build_sector0(layout: &Layout) -> [u8; 512] {
    let mut s0 = layout.sector0;
    let valid = matches!(classify(&s0), Sector0::Mbr(_));
    if !valid {
        s0 = [0; 512];
    }
    for slot in 0..4 {
        let e = &mut s0[TABLE + 16 * slot..TABLE + 16 * slot + 16];
        let part = layout
            .partitions()
            .iter()
            .find(|p| p.kind != PartitionKind::Logical && p.number == slot as u32 + 1);
        match part {
            Some(p) => {
                if let Some(raw) = p.mbr_raw {
                    e.copy_from_slice(&raw);
                }
                // validate() has checked that these fit.
                put_entry(
                    e,
                    p.bootable,
                    p.mbr_type,
                    p.start as u32,
                    p.sectors() as u32,
                    0,
                );
            }
            None => e.fill(0),
        }
    }
    s0[510..512].copy_from_slice(&SIGNATURE);
    s0
}

/// Writes sector 0 and the EBR chain.
pub(super) fn write<D: Write + Seek + ?Sized>(
    layout: &Layout,
    dev: &mut D,
) -> Result<(), PartitionError> {
    let ss = u64::from(layout.sector_size);
    let s0 = build_sector0(layout);
    write_at(dev, 0, &s0, "the MBR")?;
    let Some(ext) = layout.extended() else {
        return Ok(());
    };
    let logicals: Vec<&Partition> = layout.logicals().collect();
    if logicals.is_empty() {
        // An empty chain: one EBR with no entries, as fdisk leaves it.
        let mut ebr = [0u8; 512];
        ebr[510..512].copy_from_slice(&SIGNATURE);
        return write_at(dev, ext.start * ss, &ebr, "an empty EBR");
    }
    for (i, l) in logicals.iter().enumerate() {
        let mut ebr = [0u8; 512];
        let e0 = &mut ebr[TABLE..TABLE + 16];
        if let Some(raw) = l.mbr_raw {
            e0.copy_from_slice(&raw);
        }
        put_entry(
            e0,
            l.bootable,
            l.mbr_type,
            (l.start - l.ebr_lba) as u32,
            l.sectors() as u32,
            l.ebr_lba,
        );
        if let Some(next) = logicals.get(i + 1) {
            // The link covers the next EBR through the end of the next logical partition.
            let size = next.end - next.ebr_lba + 1;
            let e1 = &mut ebr[TABLE + 16..TABLE + 32];
            put_entry(
                e1,
                false,
                0x05,
                (next.ebr_lba - ext.start) as u32,
                size.min(u64::from(u32::MAX)) as u32,
                ext.start,
            );
        }
        ebr[510..512].copy_from_slice(&SIGNATURE);
        write_at(dev, l.ebr_lba * ss, &ebr, "an EBR")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chs_matches_the_conventional_geometry() {
        assert_eq!(chs(0), [0, 1, 0]);
        assert_eq!(chs(1), [0, 2, 0]);
        assert_eq!(chs(2048), [32, 33, 0]);
        // Cylinder 1023 is the last addressable one; bits 8-9 of the cylinder go in the
        // sector byte.
        assert_eq!(chs(1023 * 255 * 63), [0, 1 | 0xc0, 0xff]);
        assert_eq!(chs(1024 * 255 * 63), [0xfe, 0xff, 0xff]);
    }

    #[test]
    fn unchanged_entry_keeps_its_chs_bytes() {
        let mut e = [0x80, 1, 2, 3, 0x83, 4, 5, 6, 0, 8, 0, 0, 0, 8, 0, 0];
        let before = e;
        put_entry(&mut e, true, 0x83, 2048, 2048, 0);
        assert_eq!(e, before);
        put_entry(&mut e, false, 0x83, 2048, 4096, 0);
        assert_eq!(e[0], 0);
        assert_eq!(&e[1..4], &chs(2048));
        assert_eq!(&e[5..8], &chs(2048 + 4096 - 1));
        // Logical entries are relative to their EBR; CHS is absolute.
        put_entry(&mut e, false, 0x83, 2048, 4095, 100_000);
        assert_eq!(&e[1..4], &chs(102_048));
    }
}
