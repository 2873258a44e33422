//! Partition tables: one model of a disk's layout, read from an MBR (with logical
//! partitions) or a GPT, queried by inspection, changed by shrink and written back.
//!
//! Everything is parsed here, defensively: the disk is untrusted input, so every
//! offset, count and link is checked before use and every problem is a typed
//! [`PartitionError`]. Bytes the model does not describe (boot code in sector 0, GPT
//! entry names and reserved bytes, larger-than-128-byte entries) are kept as read and
//! written back unchanged.
//!
//! Sector numbers are in units of the layout's sector size (512 or 4096 bytes), and
//! partition ends are inclusive, as in the tables themselves.

mod detect;
pub mod disklabel;
mod error;
mod gpt;
mod guid;
mod mbr;

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

pub use detect::{detect_sector_size, detect_sector_size_of};
pub use error::{LayoutWarning, PartitionError};
pub use guid::{Guid, GuidParseError};

/// One mebibyte: the free tail left after the last partition when shrinking.
pub const MIB: u64 = 1 << 20;

/// The kind of partition table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TableKind {
    /// A DOS/MBR table, possibly with an extended partition holding logical ones.
    Msdos,
    /// A GUID partition table (behind a protective MBR).
    Gpt,
}

impl TableKind {
    /// The name used for the `PARTITION_TABLE` image property: `msdos` or `gpt`.
    pub fn as_str(self) -> &'static str {
        match self {
            TableKind::Msdos => "msdos",
            TableKind::Gpt => "gpt",
        }
    }
}

impl std::fmt::Display for TableKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of entry a partition is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PartitionKind {
    /// An MBR primary partition (numbers 1-4).
    Primary,
    /// An MBR extended partition (a container for logical partitions; numbers 1-4).
    Extended,
    /// An MBR logical partition (numbers 5 and up, in EBR chain order).
    Logical,
    /// A GPT partition (number = entry index + 1).
    Gpt,
}

/// MBR partition type ids that mark an extended partition.
pub const MBR_EXTENDED_TYPES: [u8; 3] = [0x05, 0x0f, 0x85];

/// MBR partition type id of a Linux swap partition.
pub const MBR_LINUX_SWAP: u8 = 0x82;

/// GPT attribute bit 2: "legacy BIOS bootable".
pub const GPT_ATTR_LEGACY_BIOS_BOOTABLE: u64 = 1 << 2;

/// One partition as the table describes it.
///
/// Obtained from a [`Layout`]; change it through the layout's methods so that the
/// table stays consistent. Equality compares what the table says about the partition.
#[derive(Debug, Clone)]
pub struct Partition {
    /// Partition number as Linux numbers it: MBR primary/extended 1-4 by slot, logical
    /// 5+ in EBR chain order; GPT entry index + 1.
    pub number: u32,
    /// First sector.
    pub start: u64,
    /// Last sector (inclusive).
    pub end: u64,
    /// Primary, extended, logical or GPT.
    pub kind: PartitionKind,
    /// MBR partition type id (0 for GPT partitions).
    pub mbr_type: u8,
    /// MBR boot flag (0x80); for GPT the "legacy BIOS bootable" attribute.
    pub bootable: bool,
    /// GPT partition type GUID.
    pub type_guid: Option<Guid>,
    /// GPT unique partition GUID (what Linux calls PARTUUID).
    pub unique_guid: Option<Guid>,
    /// GPT partition name (empty for MBR partitions).
    pub name: String,
    /// GPT attribute bits (0 for MBR partitions).
    pub attributes: u64,
    sector_size: u32,
    /// Logical partitions: the sector of the EBR describing this partition.
    ebr_lba: u64,
    /// MBR partitions: the entry as read, so an unchanged entry is written back
    /// byte for byte (CHS fields included).
    mbr_raw: Option<[u8; 16]>,
}

impl PartialEq for Partition {
    fn eq(&self, o: &Partition) -> bool {
        // Where its EBR sits and the raw entry bytes are bookkeeping for write-back.
        (
            self.number,
            self.start,
            self.end,
            self.kind,
            self.mbr_type,
            self.bootable,
        ) == (o.number, o.start, o.end, o.kind, o.mbr_type, o.bootable)
            && (
                self.type_guid,
                self.unique_guid,
                &self.name,
                self.attributes,
            ) == (o.type_guid, o.unique_guid, &o.name, o.attributes)
            && self.sector_size == o.sector_size
    }
}

impl Eq for Partition {}

impl Partition {
    /// Number of sectors.
    pub fn sectors(&self) -> u64 {
        self.end - self.start + 1
    }

    /// The sector size the sector numbers are in.
    pub fn sector_size(&self) -> u32 {
        self.sector_size
    }

    /// Byte offset of the first sector.
    pub fn offset(&self) -> u64 {
        self.start * u64::from(self.sector_size)
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.sectors() * u64::from(self.sector_size)
    }

    /// Byte offset just past the last sector.
    pub fn end_offset(&self) -> u64 {
        (self.end + 1) * u64::from(self.sector_size)
    }

    /// Whether this is an MBR extended partition.
    pub fn is_extended(&self) -> bool {
        self.kind == PartitionKind::Extended
    }

    /// Whether the table marks this partition as Linux swap (MBR 0x82 or the Linux
    /// swap type GUID). What the partition really holds is for filesystem probing.
    pub fn type_is_swap(&self) -> bool {
        self.mbr_type == MBR_LINUX_SWAP && self.kind != PartitionKind::Gpt
            || self.type_guid == Some(Guid::LINUX_SWAP)
    }

    fn describe(&self) -> String {
        format!(
            "partition {} (sectors {}-{})",
            self.number, self.start, self.end
        )
    }
}

/// A disk's partition layout.
#[derive(Debug, Clone)]
pub struct Layout {
    kind: TableKind,
    sector_size: u32,
    disk_size: u64,
    /// Sorted by number.
    partitions: Vec<Partition>,
    warnings: Vec<LayoutWarning>,
    /// The first 512 bytes of sector 0 as read (boot code is written back unchanged).
    sector0: [u8; 512],
    gpt: Option<gpt::GptState>,
}

impl Layout {
    /// Reads the partition table of a disk of `disk_size` bytes with `sector_size`-byte
    /// logical sectors.
    ///
    /// A protective MBR (type 0xEE) means GPT; a GPT behind a sector 0 without the MBR
    /// boot signature is accepted with a warning; a valid MBR without a protective entry
    /// is an MBR even if a stale GPT follows it (as Linux reads it). A disk with neither
    /// gives [`PartitionError::NoPartitionTable`].
    pub fn read<R: Read + Seek + ?Sized>(
        dev: &mut R,
        disk_size: u64,
        sector_size: u32,
    ) -> Result<Layout, PartitionError> {
        if !matches!(sector_size, 512 | 1024 | 2048 | 4096) {
            return Err(PartitionError::UnsupportedSectorSize(u64::from(
                sector_size,
            )));
        }
        let ss = u64::from(sector_size);
        if disk_size < ss {
            return Err(PartitionError::NoPartitionTable {
                reason: format!("the disk is {disk_size} bytes, less than one sector"),
            });
        }
        let mut sector0 = [0u8; 512];
        read_at(dev, 0, &mut sector0, disk_size, "sector 0")?;
        let mut layout = Layout {
            kind: TableKind::Msdos,
            sector_size,
            disk_size,
            partitions: Vec::new(),
            warnings: Vec::new(),
            sector0,
            gpt: None,
        };

        let mbr = mbr::classify(&sector0);
        let (use_gpt, protective) = match &mbr {
            mbr::Sector0::Mbr(entries) if entries.iter().any(|e| e.typ == mbr::PROTECTIVE) => {
                (true, true)
            }
            // Like Linux: a real MBR wins over a stale GPT behind it.
            mbr::Sector0::Mbr(_) => (false, false),
            mbr::Sector0::None(_) => {
                let mut sig = [0u8; 8];
                let found = disk_size >= ss + 8 && {
                    read_at(dev, ss, &mut sig, disk_size, "sector 1")?;
                    &sig == gpt::SIGNATURE
                };
                (found, false)
            }
        };

        if use_gpt {
            let (state, parts, warnings) = gpt::read(dev, sector_size, disk_size)?;
            layout.kind = TableKind::Gpt;
            layout.gpt = Some(state);
            layout.partitions = parts;
            if !protective {
                layout.warnings.push(LayoutWarning::GptNoProtectiveMbr);
            }
            layout.warnings.extend(warnings);
        } else {
            match mbr {
                mbr::Sector0::None(reason) => {
                    return Err(PartitionError::NoPartitionTable { reason })
                }
                mbr::Sector0::Mbr(entries) => {
                    layout.partitions = mbr::read(dev, &entries, sector_size, disk_size)?;
                }
            }
        }
        layout.partitions.sort_by_key(|p| p.number);
        layout.validate_structure()?;
        layout.validate_bounds(layout.disk_sectors())?;
        Ok(layout)
    }

    /// Opens an image file or block device read-only and reads its partition table.
    pub fn read_file(path: &Path, sector_size: u32) -> Result<Layout, PartitionError> {
        let mut file = std::fs::File::open(path)
            .map_err(|e| PartitionError::io(format!("open {}", path.display()), e))?;
        let size = file
            .seek(SeekFrom::End(0))
            .map_err(|e| PartitionError::io(format!("find the size of {}", path.display()), e))?;
        Layout::read(&mut file, size, sector_size)
    }

    /// MBR or GPT.
    pub fn kind(&self) -> TableKind {
        self.kind
    }

    /// Logical sector size in bytes.
    pub fn sector_size(&self) -> u32 {
        self.sector_size
    }

    /// Disk size in bytes the layout was read for (or last written for).
    pub fn disk_size(&self) -> u64 {
        self.disk_size
    }

    /// Whole sectors on the disk.
    pub fn disk_sectors(&self) -> u64 {
        self.disk_size / u64::from(self.sector_size)
    }

    /// All partitions (MBR: including the extended one), by number.
    pub fn partitions(&self) -> &[Partition] {
        &self.partitions
    }

    /// All partitions in the order they lie on the disk (an extended partition comes
    /// before the logical partitions it holds).
    pub fn partitions_in_disk_order(&self) -> Vec<&Partition> {
        let mut v: Vec<&Partition> = self.partitions.iter().collect();
        v.sort_by_key(|p| (p.start, !p.is_extended(), p.number));
        v
    }

    /// The partition with this number.
    pub fn partition(&self, number: u32) -> Option<&Partition> {
        self.partitions.iter().find(|p| p.number == number)
    }

    /// The partition that starts last on the disk: a logical partition rather than the
    /// extended partition holding it; an extended partition when it is empty and last.
    pub fn last_partition(&self) -> Option<&Partition> {
        self.partitions_in_disk_order().pop()
    }

    /// The partition holding byte `offset` of the disk: a logical partition rather than
    /// its extended partition, which is returned only for its EBRs and free space.
    pub fn partition_at_offset(&self, offset: u64) -> Option<&Partition> {
        let contains = |p: &&Partition| p.offset() <= offset && offset < p.end_offset();
        self.partitions
            .iter()
            .filter(|p| !p.is_extended())
            .find(contains)
            .or_else(|| self.partitions.iter().find(contains))
    }

    /// The MBR extended partition, if any.
    pub fn extended(&self) -> Option<&Partition> {
        self.partitions.iter().find(|p| p.is_extended())
    }

    /// The MBR logical partitions, by number (EBR chain order).
    pub fn logicals(&self) -> impl Iterator<Item = &Partition> {
        self.partitions
            .iter()
            .filter(|p| p.kind == PartitionKind::Logical)
    }

    /// The MBR disk signature (bytes 440-443), for `PARTUUID=xxxxxxxx-NN`; `None` on GPT.
    pub fn mbr_disk_signature(&self) -> Option<u32> {
        match self.kind {
            TableKind::Msdos => Some(mbr::disk_signature(&self.sector0)),
            TableKind::Gpt => None,
        }
    }

    /// The GPT disk GUID; `None` on MBR.
    pub fn gpt_disk_guid(&self) -> Option<Guid> {
        self.gpt.as_ref().map(|g| g.disk_guid)
    }

    /// GPT first usable sector; `None` on MBR.
    pub fn gpt_first_usable(&self) -> Option<u64> {
        self.gpt.as_ref().map(|g| g.first_usable)
    }

    /// GPT last usable sector (as the table says; after [`Layout::write`], for the new
    /// disk size); `None` on MBR.
    pub fn gpt_last_usable(&self) -> Option<u64> {
        self.gpt.as_ref().map(|g| g.last_usable)
    }

    /// GPT entry count and entry size in bytes; `None` on MBR.
    pub fn gpt_entries_geometry(&self) -> Option<(u32, u32)> {
        self.gpt.as_ref().map(|g| (g.entry_count, g.entry_size))
    }

    /// Oddities found while reading (all repaired by [`Layout::write`]).
    pub fn warnings(&self) -> &[LayoutWarning] {
        &self.warnings
    }

    /// The partition's PARTUUID as Linux shows it: the unique GUID on GPT,
    /// `<disk signature>-<number>` (`%08x-%02x`) on MBR.
    pub fn partuuid(&self, partition: &Partition) -> String {
        match (self.kind, partition.unique_guid) {
            (TableKind::Gpt, Some(g)) => g.to_string(),
            _ => format!(
                "{:08x}-{:02x}",
                mbr::disk_signature(&self.sector0),
                partition.number
            ),
        }
    }

    /// The partition whose PARTUUID (see [`Layout::partuuid`]) is `partuuid`, in any case.
    pub fn partition_by_partuuid(&self, partuuid: &str) -> Option<&Partition> {
        let wanted = partuuid.trim().to_ascii_lowercase();
        self.partitions.iter().find(|p| self.partuuid(p) == wanted)
    }

    /// Deletes a partition and returns it.
    ///
    /// An extended partition can only be deleted once it holds no logical partitions.
    /// Deleting a logical partition renumbers the logical partitions after it in the
    /// chain (as Linux would number them). GPT numbers never change.
    pub fn delete(&mut self, number: u32) -> Result<Partition, PartitionError> {
        let idx = self
            .partitions
            .iter()
            .position(|p| p.number == number)
            .ok_or(PartitionError::NoSuchPartition(number))?;
        let kind = self.partitions[idx].kind;
        if kind == PartitionKind::Extended {
            let logicals = self.logicals().count();
            if logicals > 0 {
                return Err(PartitionError::ExtendedNotEmpty { number, logicals });
            }
        }
        let removed = self.partitions.remove(idx);
        if kind == PartitionKind::Logical {
            for p in &mut self.partitions {
                if p.kind == PartitionKind::Logical && p.number > number {
                    p.number -= 1;
                }
            }
            // The chain must start at the extended partition's first sector.
            let ext_start = self.extended().map(|e| e.start);
            if let (Some(ext_start), Some(first)) = (
                ext_start,
                self.partitions
                    .iter_mut()
                    .find(|p| p.kind == PartitionKind::Logical && p.number == 5),
            ) {
                first.ebr_lba = ext_start;
            }
        }
        Ok(removed)
    }

    /// Moves the last sector of a partition (resize in place; the start never moves).
    ///
    /// A GPT entry keeps its type GUID, unique GUID, name and attributes. When the last
    /// logical partition on the disk is resized, its extended partition is made to end
    /// with it. The change is refused if it would make partitions overlap or leave a
    /// logical partition outside its extended one. Whether the result fits the disk is
    /// checked by [`Layout::write`], for the size written.
    pub fn set_end(&mut self, number: u32, end: u64) -> Result<(), PartitionError> {
        let mut next = self.clone();
        let idx = next
            .partitions
            .iter()
            .position(|p| p.number == number)
            .ok_or(PartitionError::NoSuchPartition(number))?;
        let p = &mut next.partitions[idx];
        if end >= u64::MAX / u64::from(self.sector_size) {
            return Err(PartitionError::InvalidChange {
                number,
                reason: format!("new last sector {end} is beyond any disk"),
            });
        }
        if end < p.start {
            return Err(PartitionError::InvalidChange {
                number,
                reason: format!(
                    "new last sector {end} is before its first sector {}",
                    p.start
                ),
            });
        }
        p.end = end;
        if p.kind == PartitionKind::Logical {
            let start = p.start;
            let is_last = next
                .logicals()
                .all(|l| l.number == number || l.start < start);
            if is_last {
                if let Some(ext) = next.partitions.iter_mut().find(|p| p.is_extended()) {
                    ext.end = end;
                }
            }
        }
        next.validate_structure()?;
        *self = next;
        Ok(())
    }

    /// Byte offset just past the last partition (or past the table itself when there are
    /// no partitions): what a shrunk image must keep.
    pub fn payload_end(&self) -> u64 {
        let ss = u64::from(self.sector_size);
        let floor = match &self.gpt {
            Some(g) => g.first_usable * ss,
            None => ss,
        };
        self.partitions
            .iter()
            .map(Partition::end_offset)
            .fold(floor, u64::max)
    }

    /// Bytes needed after the payload for the table's own tail: nothing on MBR, the
    /// backup entries and backup header on GPT.
    fn table_tail(&self) -> u64 {
        let ss = u64::from(self.sector_size);
        match &self.gpt {
            Some(g) => (g.entry_sectors(self.sector_size) + 1) * ss,
            None => 0,
        }
    }

    /// The smallest disk that holds every partition followed by 1 MiB of free space
    /// (and, on GPT, at least room for the backup entries and header).
    pub fn min_disk_size(&self) -> u64 {
        self.payload_end()
            .saturating_add(MIB.max(self.table_tail()))
    }

    /// The disk size a shrunk image gets (the original's rule): on MBR the payload plus
    /// 1 MiB, never more than the current size; on GPT the payload plus 1 MiB when that
    /// fits in the current size, otherwise just the payload plus the backup entries and
    /// header (which may exceed the current size of a truncated image).
    pub fn shrunk_disk_size(&self) -> u64 {
        let current = self.disk_sectors() * u64::from(self.sector_size);
        let roomy = self.min_disk_size();
        match self.kind {
            TableKind::Msdos => roomy.min(current.max(self.payload_end())),
            TableKind::Gpt if roomy <= current => roomy,
            TableKind::Gpt => self.payload_end().saturating_add(self.table_tail()),
        }
    }

    /// Writes the table for a disk of `new_disk_size` bytes, then reads it back into
    /// `self` (so the model describes what is now on the disk, with no warnings).
    ///
    /// MBR: sector 0 and the EBR chain. GPT: protective MBR, primary header and
    /// entries, backup entries and backup header at the new end, all checksums valid.
    /// Boot code in sector 0 is kept. The device is not truncated: an image written for
    /// a smaller size keeps its old tail until the caller cuts it (the dump copies only
    /// `new_disk_size` bytes anyway).
    pub fn write<D: Read + Write + Seek + ?Sized>(
        &mut self,
        dev: &mut D,
        new_disk_size: u64,
    ) -> Result<(), PartitionError> {
        let ss = u64::from(self.sector_size);
        if !new_disk_size.is_multiple_of(ss) {
            return Err(PartitionError::UnalignedDiskSize {
                size: new_disk_size,
                sector_size: self.sector_size,
            });
        }
        let new_sectors = new_disk_size / ss;
        self.validate_structure()?;
        self.validate_bounds(new_sectors)?;
        match self.kind {
            TableKind::Msdos => mbr::write(self, dev)?,
            TableKind::Gpt => gpt::write(self, dev, new_sectors)?,
        }
        dev.flush()
            .map_err(|e| PartitionError::io("flush the partition table", e))?;
        *self = Layout::read(dev, new_disk_size, self.sector_size)?;
        Ok(())
    }

    /// Opens an image file or block device read-write and [`writes`](Layout::write)
    /// the table for a disk of `new_disk_size` bytes. The file's length is not changed
    /// except where the GPT backup lands past its current end.
    pub fn write_file(&mut self, path: &Path, new_disk_size: u64) -> Result<(), PartitionError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| PartitionError::io(format!("open {} for writing", path.display()), e))?;
        // No fsync: on a freshly written private copy it would force the whole copy to
        // disk for nothing. Callers that write a user's own disk sync it themselves.
        self.write(&mut file, new_disk_size)
    }

    /// Checks what must hold whatever the disk size: no overlaps, logical partitions and
    /// EBRs inside the extended partition, values that fit the table's fields.
    fn validate_structure(&self) -> Result<(), PartitionError> {
        let first = match &self.gpt {
            Some(g) => g.first_usable,
            None => 1,
        };
        for p in &self.partitions {
            if p.start < first && p.kind != PartitionKind::Logical {
                return Err(PartitionError::PartitionBeforeStart {
                    number: p.number,
                    start: p.start,
                    first,
                });
            }
        }
        // Top-level partitions (everything but logical ones) must not overlap.
        let mut spans: Vec<(u64, u64, String)> = self
            .partitions
            .iter()
            .filter(|p| p.kind != PartitionKind::Logical)
            .map(|p| (p.start, p.end, p.describe()))
            .collect();
        check_overlaps(&mut spans)?;
        if self.kind == TableKind::Msdos {
            mbr::validate(self)?;
        }
        Ok(())
    }

    /// Checks that every partition fits a disk of `disk_sectors` sectors (and, on GPT,
    /// the usable area the current table describes).
    fn validate_bounds(&self, disk_sectors: u64) -> Result<(), PartitionError> {
        for p in &self.partitions {
            if p.end >= disk_sectors {
                return Err(PartitionError::PartitionPastEnd {
                    number: p.number,
                    end: p.end,
                    limit: disk_sectors.saturating_sub(1),
                    limit_what: "the end of the disk",
                });
            }
        }
        Ok(())
    }
}

/// Fails on the first two spans (first sector, last sector, description) that share a
/// sector.
fn check_overlaps(spans: &mut [(u64, u64, String)]) -> Result<(), PartitionError> {
    spans.sort_by_key(|s| (s.0, s.1));
    let mut reach: Option<&(u64, u64, String)> = None;
    for s in spans.iter() {
        if let Some(r) = reach {
            if s.0 <= r.1 {
                return Err(PartitionError::Overlap {
                    a: r.2.clone(),
                    b: s.2.clone(),
                });
            }
        }
        if reach.is_none_or(|r| s.1 > r.1) {
            reach = Some(s);
        }
    }
    Ok(())
}

/// Reads `buf.len()` bytes at `offset`, refusing to read past `disk_size`.
fn read_at<R: Read + Seek + ?Sized>(
    dev: &mut R,
    offset: u64,
    buf: &mut [u8],
    disk_size: u64,
    what: &str,
) -> Result<(), PartitionError> {
    let what = || format!("read {what} (byte {offset}) of the disk");
    let fits = offset
        .checked_add(buf.len() as u64)
        .is_some_and(|end| end <= disk_size);
    if !fits {
        return Err(PartitionError::io(
            what(),
            std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("past the end of the disk ({disk_size} bytes)"),
            ),
        ));
    }
    dev.seek(SeekFrom::Start(offset))
        .map_err(|e| PartitionError::io(what(), e))?;
    dev.read_exact(buf)
        .map_err(|e| PartitionError::io(what(), e))
}

/// Writes `buf` at `offset`.
fn write_at<W: Write + Seek + ?Sized>(
    dev: &mut W,
    offset: u64,
    buf: &[u8],
    what: &str,
) -> Result<(), PartitionError> {
    let what = || format!("write {what} (byte {offset}) of the disk");
    dev.seek(SeekFrom::Start(offset))
        .map_err(|e| PartitionError::io(what(), e))?;
    dev.write_all(buf)
        .map_err(|e| PartitionError::io(what(), e))
}
