//! Free space of the filesystems served by the appliance (xfs, btrfs), read in-process
//! and read-only from their own allocation structures, so that the dump writes it as
//! holes on every run, including runs that never start the appliance or change nothing.
//!
//! The bytes are hostile: every offset, size and count is checked against the
//! filesystem and the volume, tree walks are bounded in depth and in blocks visited, and
//! anything inconsistent gives a [`FreeSpaceError`]; the caller then keeps the whole
//! filesystem (nothing is listed free that the filesystem does not say is free).

pub mod btrfs;
pub mod xfs;

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;

use snf_core::bytes::checked;

/// Why the free space of a filesystem could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum FreeSpaceError {
    #[error("{fs} free space: cannot read {len} bytes at byte {offset}: {source}")]
    Read {
        fs: &'static str,
        offset: u64,
        len: usize,
        source: io::Error,
    },
    #[error("{fs} free space: {what}")]
    Corrupt { fs: &'static str, what: String },
    #[error("{fs} free space not trusted: {what}")]
    Untrusted { fs: &'static str, what: String },
}

/// Bytes of one volume, read at offsets relative to its start.
pub trait Volume {
    /// The volume's size in bytes.
    fn size(&self) -> u64;
    /// Fills `buf` from `offset`; a read past [`Volume::size`] is an error.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
}

/// A byte range of an image file.
pub struct FileVolume {
    file: File,
    offset: u64,
    size: u64,
}

impl FileVolume {
    /// The `size` bytes at `offset` of `image`, opened read-only.
    pub fn open(image: &Path, offset: u64, size: u64) -> io::Result<FileVolume> {
        Ok(FileVolume {
            file: File::open(image)?,
            offset,
            size,
        })
    }
}

fn past_end() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "past the end of the volume")
}

impl Volume for FileVolume {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let end = offset.checked_add(buf.len() as u64).ok_or_else(past_end)?;
        if end > self.size {
            return Err(past_end());
        }
        let at = self.offset.checked_add(offset).ok_or_else(past_end)?;
        self.file.read_exact_at(buf, at)
    }
}

/// A volume in memory (tests, fuzzing).
impl Volume for &[u8] {
    fn size(&self) -> u64 {
        self.len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| past_end())?;
        let end = start.checked_add(buf.len()).ok_or_else(past_end)?;
        buf.copy_from_slice((**self).get(start..end).ok_or_else(past_end)?);
        Ok(())
    }
}

/// Reads `len` bytes at `offset`, naming the filesystem in the error.
fn read(
    vol: &dyn Volume,
    fs: &'static str,
    offset: u64,
    len: usize,
) -> Result<Vec<u8>, FreeSpaceError> {
    let mut buf = vec![0; len];
    vol.read_at(offset, &mut buf)
        .map_err(|source| FreeSpaceError::Read {
            fs,
            offset,
            len,
            source,
        })?;
    Ok(buf)
}

// The walkers read fields at offsets taken from the volume: one outside its block
// reads as 0, which every walker treats as an empty or invalid node.
fn be16(b: &[u8], off: usize) -> u16 {
    checked::be16(b, off).unwrap_or(0)
}
fn be32(b: &[u8], off: usize) -> u32 {
    checked::be32(b, off).unwrap_or(0)
}
fn be64(b: &[u8], off: usize) -> u64 {
    checked::be64(b, off).unwrap_or(0)
}
fn le16(b: &[u8], off: usize) -> u16 {
    checked::le16(b, off).unwrap_or(0)
}
fn le32(b: &[u8], off: usize) -> u32 {
    checked::le32(b, off).unwrap_or(0)
}
fn le64(b: &[u8], off: usize) -> u64 {
    checked::le64(b, off).unwrap_or(0)
}

/// Sorts and merges touching or overlapping ranges.
fn merge(mut ranges: Vec<Range<u64>>) -> Vec<Range<u64>> {
    ranges.retain(|r| r.start < r.end);
    ranges.sort_by_key(|r| r.start);
    let mut out: Vec<Range<u64>> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// `[0, end)` minus the sorted, disjoint `used`.
pub fn complement(used: &[Range<u64>], end: u64) -> Vec<Range<u64>> {
    let mut out = Vec::new();
    let mut pos = 0;
    for r in used {
        if r.start > pos {
            out.push(pos..r.start.min(end));
        }
        pos = pos.max(r.end);
        if pos >= end {
            break;
        }
    }
    if pos < end {
        out.push(pos..end);
    }
    out.retain(|r| r.start < r.end);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_and_complement() {
        assert_eq!(merge(vec![5..7, 0..2, 1..3, 7..8, 9..9]), vec![0..3, 5..8]);
        assert_eq!(complement(&[0..3, 5..8], 10), vec![3..5, 8..10]);
        assert_eq!(
            complement(&[2..12, 14..15], 10),
            vec![Range { start: 0, end: 2 }]
        );
    }

    #[test]
    fn slices_refuse_reads_past_their_end() {
        let v: &[u8] = &[1, 2, 3];
        let v = &v;
        let mut b = [0; 2];
        assert!(v.read_at(2, &mut b).is_err());
        assert!(v.read_at(u64::MAX, &mut b).is_err());
        v.read_at(1, &mut b).unwrap();
        assert_eq!(b, [2, 3]);
    }
}
