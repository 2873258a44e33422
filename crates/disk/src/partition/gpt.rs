//! GUID partition tables: header at LBA 1 and a backup at the disk's last sector, each
//! with its own copy of the entry array, all protected by CRC32.
//!
//! Nothing assumes 512-byte sectors or 128 entries of 128 bytes: the entry geometry
//! comes from the header, sizes from the layout's sector size.

use std::io::{Read, Seek, Write};

use snf_core::bytes::{le32, le64};

use super::{
    mbr, read_at, write_at, Guid, Layout, LayoutWarning, Partition, PartitionError, PartitionKind,
    GPT_ATTR_LEGACY_BIOS_BOOTABLE,
};

pub(super) const SIGNATURE: &[u8; 8] = b"EFI PART";

const MIN_HEADER_SIZE: u32 = 92;
const MIN_ENTRY_SIZE: u32 = 128;
const MAX_ENTRY_SIZE: u32 = 4096;
/// Bound on the entry array: 128 times the usual 16 KiB. Anything larger is garbage,
/// and refusing it keeps a crafted header from making us allocate gigabytes.
const MAX_ENTRIES_BYTES: u64 = 2 * 1024 * 1024;

/// What the layout keeps of a GPT to write it back.
#[derive(Debug, Clone)]
pub(super) struct GptState {
    /// The raw header (header-size bytes) the table was read from; fields outside the
    /// ones rewritten (revision, reserved bytes) are written back as they were.
    header: Vec<u8>,
    pub disk_guid: Guid,
    pub first_usable: u64,
    pub last_usable: u64,
    primary_entries_lba: u64,
    pub entry_count: u32,
    pub entry_size: u32,
    /// The raw entry array: names, reserved and extra bytes are kept from here.
    entries: Vec<u8>,
}

impl GptState {
    pub(super) fn entries_bytes(&self) -> u64 {
        u64::from(self.entry_count) * u64::from(self.entry_size)
    }

    pub(super) fn entry_sectors(&self, sector_size: u32) -> u64 {
        self.entries_bytes().div_ceil(u64::from(sector_size))
    }
}

/// A header that passed every check.
#[derive(Debug, Clone)]
struct Header {
    raw: Vec<u8>,
    alternate: u64,
    first_usable: u64,
    last_usable: u64,
    disk_guid: Guid,
    entries_lba: u64,
    entry_count: u32,
    entry_size: u32,
    entries_crc: u32,
}

fn guid_at(b: &[u8], off: usize) -> Guid {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[off..off + 16]);
    Guid::from_disk_bytes(a)
}

fn header_crc(raw: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&raw[..16]);
    h.update(&[0; 4]);
    h.update(&raw[20..]);
    h.finalize()
}

/// Checks a header read from sector `lba`.
fn parse_header(
    sector: &[u8],
    lba: u64,
    sector_size: u32,
    disk_sectors: u64,
) -> Result<Header, PartitionError> {
    let invalid = |reason: String| PartitionError::InvalidGptHeader { lba, reason };
    if &sector[..8] != SIGNATURE {
        return Err(invalid("no \"EFI PART\" signature".into()));
    }
    let header_size = le32(sector, 12);
    if !(MIN_HEADER_SIZE..=sector_size).contains(&header_size) {
        return Err(invalid(format!(
            "header size {header_size} is outside {MIN_HEADER_SIZE}..={sector_size}"
        )));
    }
    let raw = sector[..header_size as usize].to_vec();
    let stored = le32(&raw, 16);
    let computed = header_crc(&raw);
    if stored != computed {
        return Err(PartitionError::BadGptHeaderCrc {
            lba,
            stored,
            computed,
        });
    }
    let my_lba = le64(&raw, 24);
    if my_lba != lba {
        return Err(invalid(format!("the header says it is at sector {my_lba}")));
    }
    let h = Header {
        alternate: le64(&raw, 32),
        first_usable: le64(&raw, 40),
        last_usable: le64(&raw, 48),
        disk_guid: guid_at(&raw, 56),
        entries_lba: le64(&raw, 72),
        entry_count: le32(&raw, 80),
        entry_size: le32(&raw, 84),
        entries_crc: le32(&raw, 88),
        raw,
    };
    let es = h.entry_size;
    if !(MIN_ENTRY_SIZE..=MAX_ENTRY_SIZE).contains(&es)
        || !(es / 128).is_power_of_two()
        || !es.is_multiple_of(128)
    {
        return Err(invalid(format!(
            "entry size {es} is not 128 × 2^n bytes up to {MAX_ENTRY_SIZE}"
        )));
    }
    let bytes = u64::from(h.entry_count) * u64::from(es);
    if h.entry_count == 0 || bytes > MAX_ENTRIES_BYTES {
        return Err(invalid(format!(
            "{} entries of {es} bytes is not a plausible entry array",
            h.entry_count
        )));
    }
    let entry_sectors = bytes.div_ceil(u64::from(sector_size));
    if h.first_usable < 2 || h.first_usable > h.last_usable.saturating_add(1) {
        return Err(invalid(format!(
            "usable sectors {}-{} make no sense",
            h.first_usable, h.last_usable
        )));
    }
    let entries_end = h
        .entries_lba
        .checked_add(entry_sectors)
        .ok_or_else(|| invalid(format!("entry array sector {} overflows", h.entries_lba)))?;
    if lba == 1 {
        if h.entries_lba < 2 || entries_end > h.first_usable {
            return Err(invalid(format!(
                "the entry array (sectors {}-{}) is not between the header and the first usable sector {}",
                h.entries_lba,
                entries_end - 1,
                h.first_usable
            )));
        }
        if h.alternate <= h.last_usable {
            return Err(invalid(format!(
                "the backup header sector {} is inside the usable sectors {}-{}",
                h.alternate, h.first_usable, h.last_usable
            )));
        }
    } else if h.entries_lba <= h.last_usable || entries_end > lba {
        return Err(invalid(format!(
            "the backup entry array (sectors {}-{}) is not between the last usable sector {} and the header",
            h.entries_lba,
            entries_end - 1,
            h.last_usable
        )));
    }
    if entries_end > disk_sectors {
        return Err(invalid(format!(
            "the entry array (sectors {}-{}) extends past the end of the disk ({disk_sectors} sectors)",
            h.entries_lba,
            entries_end - 1
        )));
    }
    Ok(h)
}

/// Reads and checks the header at `lba` and its entry array.
fn read_table<R: Read + Seek + ?Sized>(
    dev: &mut R,
    lba: u64,
    sector_size: u32,
    disk_size: u64,
) -> Result<(Header, Vec<u8>), PartitionError> {
    let ss = u64::from(sector_size);
    let disk_sectors = disk_size / ss;
    if lba >= disk_sectors {
        return Err(PartitionError::InvalidGptHeader {
            lba,
            reason: format!("past the end of the disk ({disk_sectors} sectors)"),
        });
    }
    let mut sector = vec![0u8; sector_size as usize];
    read_at(dev, lba * ss, &mut sector, disk_size, "a GPT header")?;
    let h = parse_header(&sector, lba, sector_size, disk_sectors)?;
    // parse_header bounds this by MAX_ENTRIES_BYTES.
    let mut entries = vec![0u8; (u64::from(h.entry_count) * u64::from(h.entry_size)) as usize];
    read_at(
        dev,
        h.entries_lba * ss,
        &mut entries,
        disk_size,
        "the GPT entry array",
    )?;
    let computed = crc32fast::hash(&entries);
    if computed != h.entries_crc {
        return Err(PartitionError::BadGptEntriesCrc {
            lba: h.entries_lba,
            stored: h.entries_crc,
            computed,
        });
    }
    Ok((h, entries))
}

/// Whether a valid backup describes the same table as the primary.
fn same_table(p: &Header, b: &Header) -> bool {
    p.disk_guid == b.disk_guid
        && p.first_usable == b.first_usable
        && p.last_usable == b.last_usable
        && p.entry_count == b.entry_count
        && p.entry_size == b.entry_size
        && p.entries_crc == b.entries_crc
}

fn decode_name(raw: &[u8]) -> String {
    let units = raw
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0);
    char::decode_utf16(units)
        .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

fn parse_entries(
    h: &Header,
    entries: &[u8],
    sector_size: u32,
    disk_sectors: u64,
) -> Result<Vec<Partition>, PartitionError> {
    let mut parts = Vec::new();
    for (i, e) in entries.chunks_exact(h.entry_size as usize).enumerate() {
        let type_guid = guid_at(e, 0);
        if type_guid.is_nil() {
            continue;
        }
        let number = i as u32 + 1;
        let start = le64(e, 32);
        let end = le64(e, 40);
        if start > end {
            return Err(PartitionError::InvalidGptEntry {
                number,
                reason: format!("first sector {start} is after last sector {end}"),
            });
        }
        if end > h.last_usable {
            return Err(PartitionError::PartitionPastEnd {
                number,
                end,
                limit: h.last_usable,
                limit_what: "the last usable sector",
            });
        }
        if end >= disk_sectors {
            return Err(PartitionError::PartitionPastEnd {
                number,
                end,
                limit: disk_sectors.saturating_sub(1),
                limit_what: "the end of the disk",
            });
        }
        let attributes = le64(e, 48);
        parts.push(Partition {
            number,
            start,
            end,
            kind: PartitionKind::Gpt,
            mbr_type: 0,
            bootable: attributes & GPT_ATTR_LEGACY_BIOS_BOOTABLE != 0,
            type_guid: Some(type_guid),
            unique_guid: Some(guid_at(e, 16)),
            name: decode_name(&e[56..128]),
            attributes,
            sector_size,
            ebr_lba: 0,
            mbr_raw: None,
        });
    }
    Ok(parts)
}

/// Reads the GPT: the primary if it is valid (checking the backup), else the backup
/// at the disk's last sector.
pub(super) fn read<R: Read + Seek + ?Sized>(
    dev: &mut R,
    sector_size: u32,
    disk_size: u64,
) -> Result<(GptState, Vec<Partition>, Vec<LayoutWarning>), PartitionError> {
    let disk_sectors = disk_size / u64::from(sector_size);
    let mut warnings = Vec::new();
    let (h, entries, primary_entries_lba) = match read_table(dev, 1, sector_size, disk_size) {
        Ok((ph, pe)) => {
            let alt = ph.alternate;
            if alt >= disk_sectors {
                warnings.push(LayoutWarning::GptBackupMissing { expected_lba: alt });
            } else {
                match read_table(dev, alt, sector_size, disk_size) {
                    Ok((bh, _)) if !same_table(&ph, &bh) || bh.alternate != 1 => {
                        warnings.push(LayoutWarning::GptBackupMismatch { lba: alt })
                    }
                    Ok(_) if alt != disk_sectors - 1 => {
                        warnings.push(LayoutWarning::GptBackupNotAtEnd { lba: alt })
                    }
                    Ok(_) => {}
                    Err(e) => warnings.push(LayoutWarning::GptBackupInvalid {
                        lba: alt,
                        reason: e.to_string(),
                    }),
                }
            }
            let lba = ph.entries_lba;
            (ph, pe, lba)
        }
        Err(primary_err) => {
            let last = disk_sectors.saturating_sub(1);
            match read_table(dev, last, sector_size, disk_size) {
                Ok((bh, be)) if last > 1 => {
                    warnings.push(LayoutWarning::GptPrimaryInvalid {
                        reason: primary_err.to_string(),
                    });
                    (bh, be, 2)
                }
                _ => return Err(primary_err),
            }
        }
    };
    let parts = parse_entries(&h, &entries, sector_size, disk_sectors)?;
    let state = GptState {
        header: h.raw,
        disk_guid: h.disk_guid,
        first_usable: h.first_usable,
        last_usable: h.last_usable,
        primary_entries_lba,
        entry_count: h.entry_count,
        entry_size: h.entry_size,
        entries,
    };
    Ok((state, parts, warnings))
}

fn build_header(
    template: &[u8],
    sector_size: u32,
    my_lba: u64,
    alternate: u64,
    last_usable: u64,
    entries_lba: u64,
    entries_crc: u32,
) -> Vec<u8> {
    let mut h = template.to_vec();
    h[24..32].copy_from_slice(&my_lba.to_le_bytes());
    h[32..40].copy_from_slice(&alternate.to_le_bytes());
    h[48..56].copy_from_slice(&last_usable.to_le_bytes());
    h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
    h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
    let crc = header_crc(&h);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    h.resize(sector_size as usize, 0);
    h
}

/// Sector 0 for a GPT disk of `new_sectors`: the protective entry sized to the disk
/// (min(sectors - 1, 0xFFFFFFFF)), in the slot it was in. Boot code is kept.
///
/// A hybrid MBR (the protective entry beside real ones, as `sgdisk -h` makes) is kept
/// hybrid and consistent with the GPT: an entry that starts where a GPT partition
/// starts is given that partition's size (so a shrunk partition's twin shrinks with
/// it), one whose partition was deleted is cleared; any other entry is clamped to the
/// disk, or cleared if it starts past its end; the protective entry is clamped to the
/// disk.
fn protective_mbr(layout: &Layout, new_sectors: u64) -> [u8; 512] {
    let mut s0 = layout.sector0;
    let full = (new_sectors - 1).min(u64::from(u32::MAX)) as u32;
    if let mbr::Sector0::Mbr(entries) = mbr::classify(&s0) {
        let pmbr = entries.iter().position(|e| e.typ == mbr::PROTECTIVE);
        let hybrid = entries
            .iter()
            .any(|e| !e.is_empty() && e.typ != mbr::PROTECTIVE);
        if let Some(slot) = pmbr {
            if !hybrid {
                let e = &mut s0[446 + 16 * slot..446 + 16 * slot + 16];
                mbr::put_entry(e, false, mbr::PROTECTIVE, 1, full, 0);
                return s0;
            }
            let read_starts = layout.gpt.as_ref().map_or_else(Vec::new, |g| {
                g.entries
                    .chunks_exact(g.entry_size as usize)
                    .filter(|e| e[0..16].iter().any(|&b| b != 0))
                    .map(|e| le64(e, 32))
                    .collect()
            });
            for (i, entry) in entries.iter().enumerate() {
                if entry.is_empty() {
                    continue;
                }
                let e = &mut s0[446 + 16 * i..446 + 16 * i + 16];
                let start = u64::from(entry.start);
                let twin = (entry.typ != mbr::PROTECTIVE)
                    .then(|| layout.partitions().iter().find(|p| p.start == start))
                    .flatten();
                let (start, size) = match twin {
                    Some(p) => (start, p.sectors()),
                    // It mirrored a partition that was deleted.
                    None if entry.typ != mbr::PROTECTIVE && read_starts.contains(&start) => {
                        e.fill(0);
                        continue;
                    }
                    None if entry.typ == mbr::PROTECTIVE => {
                        let start = start.clamp(1, new_sectors - 1);
                        (start, u64::from(entry.size).min(new_sectors - start))
                    }
                    None if start >= new_sectors => {
                        e.fill(0);
                        continue;
                    }
                    None => (start, u64::from(entry.size).min(new_sectors - start)),
                };
                let size = size.min(u64::from(u32::MAX)) as u32;
                mbr::put_entry(e, entry.boot == 0x80, entry.typ, start as u32, size, 0);
            }
            return s0;
        }
    } else {
        // Not an MBR at all: nothing in sector 0 is worth keeping.
        s0 = [0; 512];
    }
    s0[446..510].fill(0);
    mbr::put_entry(&mut s0[446..462], false, mbr::PROTECTIVE, 1, full, 0);
    s0[510] = 0x55;
    s0[511] = 0xaa;
    s0
}

/// Writes protective MBR, primary header and entries, backup entries and header for a
/// disk of `new_sectors` sectors.
pub(super) fn write<D: Write + Seek + ?Sized>(
    layout: &Layout,
    dev: &mut D,
    new_sectors: u64,
) -> Result<(), PartitionError> {
    let Some(g) = &layout.gpt else {
        return Ok(());
    };
    let ss = u64::from(layout.sector_size);
    let es = g.entry_sectors(layout.sector_size);
    let size = new_sectors * ss;
    let primary_end = g.primary_entries_lba + es;
    if primary_end > g.first_usable {
        return Err(PartitionError::DiskTooSmall {
            size,
            reason: format!(
                "the primary entry array (sectors {}-{}) runs into the first usable sector {}",
                g.primary_entries_lba,
                primary_end - 1,
                g.first_usable
            ),
        });
    }
    // Backup header on the last sector, its entries just before it.
    let backup_lba = new_sectors.checked_sub(1);
    let backup_entries_lba = backup_lba.and_then(|b| b.checked_sub(es));
    let last_usable = backup_entries_lba.and_then(|b| b.checked_sub(1));
    let (Some(backup_lba), Some(backup_entries_lba), Some(last_usable)) =
        (backup_lba, backup_entries_lba, last_usable)
    else {
        return Err(PartitionError::DiskTooSmall {
            size,
            reason: "no room for the backup GPT".into(),
        });
    };
    if last_usable + 1 < g.first_usable || backup_entries_lba < primary_end {
        return Err(PartitionError::DiskTooSmall {
            size,
            reason: format!(
                "the backup GPT (sectors {backup_entries_lba}-{backup_lba}) would overlap the primary one or the first usable sector {}",
                g.first_usable
            ),
        });
    }
    for p in layout.partitions() {
        if p.end > last_usable {
            return Err(PartitionError::PartitionPastEnd {
                number: p.number,
                end: p.end,
                limit: last_usable,
                limit_what: "the last usable sector of the new disk size",
            });
        }
    }

    let mut entries = g.entries.clone();
    for (i, e) in entries.chunks_exact_mut(g.entry_size as usize).enumerate() {
        match layout.partition(i as u32 + 1) {
            Some(p) => {
                let type_guid = p.type_guid.unwrap_or(Guid::NIL);
                e[0..16].copy_from_slice(&type_guid.to_disk_bytes());
                let unique = p.unique_guid.unwrap_or(Guid::NIL);
                e[16..32].copy_from_slice(&unique.to_disk_bytes());
                e[32..40].copy_from_slice(&p.start.to_le_bytes());
                e[40..48].copy_from_slice(&p.end.to_le_bytes());
                e[48..56].copy_from_slice(&p.attributes.to_le_bytes());
            }
            None => e.fill(0),
        }
    }
    let entries_crc = crc32fast::hash(&entries);
    let mut entries_padded = entries;
    entries_padded.resize((es * ss) as usize, 0);

    let sector_size = layout.sector_size;
    let primary = build_header(
        &g.header,
        sector_size,
        1,
        backup_lba,
        last_usable,
        g.primary_entries_lba,
        entries_crc,
    );
    let backup = build_header(
        &g.header,
        sector_size,
        backup_lba,
        1,
        last_usable,
        backup_entries_lba,
        entries_crc,
    );
    let pmbr = protective_mbr(layout, new_sectors);

    write_at(dev, 0, &pmbr, "the protective MBR")?;
    write_at(dev, ss, &primary, "the primary GPT header")?;
    write_at(
        dev,
        g.primary_entries_lba * ss,
        &entries_padded,
        "the primary GPT entries",
    )?;
    write_at(
        dev,
        backup_entries_lba * ss,
        &entries_padded,
        "the backup GPT entries",
    )?;
    write_at(dev, backup_lba * ss, &backup, "the backup GPT header")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_decode_up_to_the_first_nul() {
        let mut raw = [0u8; 72];
        for (i, u) in "root☃".encode_utf16().enumerate() {
            raw[2 * i..2 * i + 2].copy_from_slice(&u.to_le_bytes());
        }
        assert_eq!(decode_name(&raw), "root☃");
        // An unpaired surrogate is not a panic.
        raw[0..2].copy_from_slice(&0xd800u16.to_le_bytes());
        assert_eq!(decode_name(&raw), "\u{fffd}oot☃");
    }
}
