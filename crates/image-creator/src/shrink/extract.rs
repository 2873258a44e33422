//! A partition's filesystem extracted to a scratch file and copied back.

use std::fs::{File, OpenOptions};
use std::ops::Range;
use std::path::{Path, PathBuf};

use snf_core::Reporter;
use snf_disk::partition::Partition;
use snf_disk::WorkDir;

use super::copy::{copy_range, zero_range, Zeros};
use super::free::{complement, trusted_used_ranges};
use super::{disk_name, io_err, open_rw, ShrinkError};

/// A partition's filesystem copied to its own sparse file in the work directory.
pub(super) struct Extracted {
    /// Removes the file when dropped.
    file_path: tempfile::TempPath,
    /// How messages name the file (its own name is internal to the work directory).
    file_name: String,
    disk: PathBuf,
    /// How messages name the disk ([`disk_name`]).
    disk_name: String,
    partition: u32,
    /// Where the filesystem's bytes are on the disk, in its order: one piece for a
    /// partition, one per extent run for an LVM logical volume.
    map: Vec<Piece>,
}

/// `len` bytes of the filesystem at `at`, found on the disk at `disk`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Piece {
    pub(super) at: u64,
    pub(super) disk: u64,
    pub(super) len: u64,
}

/// `range` of the filesystem as (disk offset, length) pieces through `map`.
fn through(map: &[Piece], range: Range<u64>) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for p in map {
        let start = range.start.max(p.at);
        let end = range.end.min(p.at + p.len);
        if start < end {
            out.push((p.disk + (start - p.at), end - start));
        }
    }
    out
}

impl Extracted {
    /// Copies the used blocks of the (clean) filesystem on `p`, or the whole partition
    /// when its bitmaps cannot be trusted (unclean, journal to replay, errors).
    pub(super) fn new(
        disk: &Path,
        p: &Partition,
        workdir: &WorkDir,
        reporter: &dyn Reporter,
    ) -> Result<Extracted, ShrinkError> {
        let used = match trusted_used_ranges(disk, p.offset(), p.size()) {
            Some(u) => u,
            None => {
                reporter.detail(&format!(
                    "partition {}: the filesystem is not clean; copying all of it",
                    p.number
                ));
                vec![Range {
                    start: 0,
                    end: p.size(),
                }]
            }
        };
        let copies = used
            .iter()
            .map(|r| (r.start, p.offset() + r.start, r.end - r.start))
            .collect();
        let map = vec![Piece {
            at: 0,
            disk: p.offset(),
            len: p.size(),
        }];
        let what = format!("partition {}", p.number);
        Extracted::copy_out(disk, map, p.number, &what, copies, workdir, reporter)
    }

    /// Copies the filesystem made of the pieces `map` (an LVM logical volume on
    /// partition `partition`, named `what` in messages) to a scratch file. Its bitmaps
    /// are not at one offset of the disk for libext2fs to read, so everything but the
    /// disk's holes is copied: a private copy already has the free blocks punched.
    pub(super) fn gather(
        disk: &Path,
        map: Vec<Piece>,
        partition: u32,
        what: &str,
        workdir: &WorkDir,
        reporter: &dyn Reporter,
    ) -> Result<Extracted, ShrinkError> {
        let disk_name = disk_name(disk, workdir);
        let src = File::open(disk).map_err(io_err(format!("open {disk_name}")))?;
        let mut data: Vec<(u64, u64, u64)> = Vec::new();
        for p in &map {
            snf_core::cancel::check()?;
            let runs = snf_disk::data_ranges(&src, p.disk..p.disk + p.len)
                .map_err(io_err(format!("read {disk_name}")))?;
            for r in runs {
                data.push((p.at + (r.start - p.disk), r.start, r.end - r.start));
            }
        }
        Extracted::copy_out(disk, map, partition, what, data, workdir, reporter)
    }

    /// Copies `copies` — (filesystem offset, disk offset, length) — of the filesystem
    /// made of the pieces `map` to a new sparse scratch file of the work directory.
    fn copy_out(
        disk: &Path,
        map: Vec<Piece>,
        partition: u32,
        what: &str,
        copies: Vec<(u64, u64, u64)>,
        workdir: &WorkDir,
        reporter: &dyn Reporter,
    ) -> Result<Extracted, ShrinkError> {
        let bytes: u64 = copies.iter().map(|d| d.2).sum();
        workdir.ensure_space(bytes, &format!("a copy of the filesystem of {what}"))?;
        let disk_name = disk_name(disk, workdir);
        let file_name = format!("the extracted copy of {what}");
        let temp = tempfile::Builder::new()
            .prefix(&format!("part{partition}-"))
            .suffix(".ext")
            .tempfile_in(workdir.path())
            .map_err(io_err(format!(
                "create {file_name} under {}",
                workdir.parent().display()
            )))?;
        let (out, file_path) = temp.into_parts();
        let size = map.iter().map(|p| p.at + p.len).max().unwrap_or(0);
        out.set_len(size)
            .map_err(io_err(format!("extend {file_name}")))?;
        let src = File::open(disk).map_err(io_err(format!("open {disk_name}")))?;
        let task = reporter.task(
            &format!("Extracting the filesystem of {what}"),
            bytes,
            snf_core::Unit::Bytes,
        );
        for (at, from, len) in copies {
            copy_range(&src, from, &out, at, len, Zeros::Skip, |n| task.inc(n))
                .map_err(|e| e.context(&disk_name, &file_name))?;
        }
        task.finish("done");
        Ok(Extracted {
            file_path,
            file_name,
            disk: disk.to_path_buf(),
            disk_name,
            partition,
            map,
        })
    }

    pub(super) fn path(&self) -> &Path {
        &self.file_path
    }

    /// How messages name the extracted file.
    pub(super) fn file_name(&self) -> &str {
        &self.file_name
    }

    /// Writes the resized filesystem's used blocks back into the partition (or the
    /// LV's extents) and zeroes the rest of its first `part_bytes` bytes.
    pub(super) fn copy_back(&self, part_bytes: u64) -> Result<(), ShrinkError> {
        let used =
            trusted_used_ranges(&self.file_path, 0, part_bytes).ok_or(ShrinkError::NotClean {
                partition: self.partition,
            })?;
        let src = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.file_path)
            .map_err(io_err(format!("open {}", self.file_name)))?;
        // resize2fs cut the file at the filesystem's end; a partition tail shorter than a
        // block past it reads as zeros.
        let len = src
            .metadata()
            .map_err(io_err(format!("examine {}", self.file_name)))?
            .len();
        if len < part_bytes {
            src.set_len(part_bytes)
                .map_err(io_err(format!("extend {}", self.file_name)))?;
        }
        let dst = open_rw(&self.disk, &self.disk_name)?;
        for r in &used {
            let mut at = r.start;
            for (to, len) in through(&self.map, r.clone()) {
                // Over what the disk held: a block of zeros must be written too.
                copy_range(&src, at, &dst, to, len, Zeros::Write, |_| {})
                    .map_err(|e| e.context(&self.file_name, &self.disk_name))?;
                at += len;
            }
        }
        for r in complement(&used, part_bytes) {
            for (to, len) in through(&self.map, r) {
                zero_range(&dst, to..to + len)?;
            }
        }
        // No fsync: the disk is read back through the page cache, and a private copy
        // need not reach the platter at all.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_map_through_pieces() {
        let map = [
            Piece {
                at: 0,
                disk: 1000,
                len: 10,
            },
            Piece {
                at: 10,
                disk: 500,
                len: 10,
            },
        ];
        assert_eq!(through(&map, 5..15), vec![(1005, 5), (500, 5)]);
        assert_eq!(through(&map, 12..30), vec![(502, 8)]);
        assert!(through(&map, 20..30).is_empty());
    }
}
