//! A sparse in-memory disk and the checks every partition target makes.
//!
//! An input is `[flags][disk sectors: u32 LE]` followed by records
//! `[sector: u32 LE][length: u16 LE][bytes]` placed at that sector. Records rather than
//! one flat image: the tables that matter live at both ends of a disk (GPT backup) or
//! scattered through it (EBR chains), and a flat input that large would drown the fuzzer.

use std::collections::HashMap;
use std::io::{self, Read, Seek, SeekFrom, Write};

use snf_disk::partition::{detect_sector_size_of, disklabel, Layout};

const BLOCK: u64 = 4096;

/// Reads as zeros except where the input or a write put bytes.
#[derive(Debug, Clone)]
pub struct SparseDisk {
    blocks: HashMap<u64, Box<[u8; BLOCK as usize]>>,
    size: u64,
    pos: u64,
}

impl SparseDisk {
    pub fn new(size: u64) -> SparseDisk {
        SparseDisk {
            blocks: HashMap::new(),
            size,
            pos: 0,
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Puts `data` at `offset`; whatever falls past the end is dropped.
    pub fn put(&mut self, offset: u64, data: &[u8]) {
        let end = offset.saturating_add(data.len() as u64).min(self.size);
        let mut at = offset;
        while at < end {
            let (b, o) = (at / BLOCK, (at % BLOCK) as usize);
            let n = ((BLOCK as usize) - o).min((end - at) as usize);
            let block = self
                .blocks
                .entry(b)
                .or_insert_with(|| Box::new([0; BLOCK as usize]));
            let from = (at - offset) as usize;
            block[o..o + n].copy_from_slice(&data[from..from + n]);
            at += n as u64;
        }
    }

    fn get(&self, offset: u64, buf: &mut [u8]) -> usize {
        let end = offset.saturating_add(buf.len() as u64).min(self.size);
        let mut at = offset;
        while at < end {
            let (b, o) = (at / BLOCK, (at % BLOCK) as usize);
            let n = ((BLOCK as usize) - o).min((end - at) as usize);
            let to = (at - offset) as usize;
            match self.blocks.get(&b) {
                Some(block) => buf[to..to + n].copy_from_slice(&block[o..o + n]),
                None => buf[to..to + n].fill(0),
            }
            at += n as u64;
        }
        end.saturating_sub(offset) as usize
    }
}

impl Read for SparseDisk {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.get(self.pos, buf);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for SparseDisk {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // A table written past the end grows the disk, as a file would.
        let end = self.pos.saturating_add(buf.len() as u64);
        self.size = self.size.max(end);
        self.put(self.pos, buf);
        self.pos = end;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for SparseDisk {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = new.ok_or_else(|| io::Error::other("seek before the start"))?;
        Ok(self.pos)
    }
}

/// The disk an input describes, and its logical sector size.
pub fn decode(data: &[u8]) -> Option<(SparseDisk, u32)> {
    let (head, mut rest) = data.split_at_checked(5)?;
    let sector_size: u32 = if head[0] & 1 == 0 { 512 } else { 4096 };
    let sectors = u32::from_le_bytes(head[1..5].try_into().ok()?);
    let mut disk = SparseDisk::new(u64::from(sectors) * u64::from(sector_size));
    while rest.len() >= 6 {
        let sector = u32::from_le_bytes(rest[0..4].try_into().ok()?);
        let len = usize::from(u16::from_le_bytes(rest[4..6].try_into().ok()?));
        let bytes = &rest[6..];
        let bytes = &bytes[..len.min(bytes.len())];
        disk.put(u64::from(sector) * u64::from(sector_size), bytes);
        rest = &rest[6 + bytes.len()..];
    }
    Some((disk, sector_size))
}

/// Encodes a disk image as an input (the seed corpus script's counterpart of [`decode`]):
/// every non-zero sector, runs merged.
pub fn encode(image: &[u8], sector_size: u32) -> Vec<u8> {
    let ss = sector_size as usize;
    let mut out = vec![u8::from(sector_size == 4096)];
    out.extend_from_slice(&((image.len() / ss) as u32).to_le_bytes());
    let mut s = 0;
    let sectors = image.len() / ss;
    while s < sectors {
        if image[s * ss..(s + 1) * ss].iter().all(|b| *b == 0) {
            s += 1;
            continue;
        }
        let start = s;
        while s < sectors
            && (s - start + 1) * ss <= usize::from(u16::MAX)
            && image[s * ss..(s + 1) * ss].iter().any(|b| *b != 0)
        {
            s += 1;
        }
        let bytes = &image[start * ss..s * ss];
        out.extend_from_slice(&(start as u32).to_le_bytes());
        out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

/// Reads the table and, when one is accepted, checks what a run relies on: the queries
/// answer without panicking, and writing it back at the shrunk size (and, unless reading
/// warned, at the same size) gives a table that reads back as the same partitions.
pub fn check_layout(mut disk: SparseDisk, sector_size: u32) {
    let _ = detect_sector_size_of(&mut disk);
    let size = disk.size();
    let Ok(layout) = Layout::read(&mut disk, size, sector_size) else {
        return;
    };
    let _ = (layout.min_disk_size(), layout.payload_end());
    // BSD disklabels nested in the MBR partitions: every slice inside its partition.
    for label in disklabel::read_labels(&mut disk.clone(), &layout)
        .into_iter()
        .flatten()
    {
        let parent = layout.partition(label.parent).expect("a label's partition");
        for s in &label.slices {
            assert!(
                s.start * 512 >= parent.offset()
                    && (s.start + s.sectors) * 512 <= parent.end_offset(),
                "slice {} of partition {} lies outside it",
                s.letter,
                label.parent
            );
        }
    }
    let _ = layout.partitions_in_disk_order();
    let _ = layout.last_partition();
    for p in layout.partitions() {
        // Hostile GPTs may repeat a GUID: only that the lookup answers matters.
        let _ = layout.partition_by_partuuid(&layout.partuuid(p));
        let _ = layout.partition_at_offset(p.offset());
    }
    for new_size in [size, layout.shrunk_disk_size()] {
        let mut copy = layout.clone();
        let mut dev = disk.clone();
        match copy.write(&mut dev, new_size) {
            Ok(()) => assert_eq!(
                copy.partitions(),
                layout.partitions(),
                "the table written for {new_size} bytes reads back differently"
            ),
            // A truncated GPT image (backup header past the end) may not fit its
            // table at its own size; reading said so with a warning, and the shrunk
            // size is the one that makes room for it.
            Err(e) => assert!(
                new_size == size && !layout.warnings().is_empty(),
                "a table read from a {size}-byte disk cannot be written for {new_size} bytes: {e}"
            ),
        }
    }
    // Shrinking the last partition is what a run does to a table.
    if let Some(last) = layout.last_partition().filter(|p| !p.is_extended()) {
        let mut copy = layout.clone();
        let end = last.start + (last.end - last.start) / 2;
        if copy.set_end(last.number, end).is_ok() {
            let mut dev = disk.clone();
            let new_size = copy.shrunk_disk_size();
            if copy.write(&mut dev, new_size).is_ok() {
                assert_eq!(copy.partition(last.number).map(|p| p.end), Some(end));
            }
        }
    }
}
