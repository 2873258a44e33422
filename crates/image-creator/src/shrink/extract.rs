//! A partition's filesystem extracted to a scratch file and copied back.

use std::fs::{File, OpenOptions};
use std::ops::Range;
use std::path::{Path, PathBuf};

use snf_core::Reporter;
use snf_disk::WorkDir;

use super::copy::{copy_range, zero_range};
use super::free::{complement, trusted_used_ranges};
use super::region::Region;
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
    /// How messages name the filesystem's partition or volume.
    volume: String,
    offset: u64,
}

impl Extracted {
    /// Copies the used blocks of the (clean) filesystem on `p`, or the whole partition
    /// when its bitmaps cannot be trusted (unclean, journal to replay, errors).
    pub(super) fn new(
        disk: &Path,
        p: &Region,
        workdir: &WorkDir,
        reporter: &dyn Reporter,
    ) -> Result<Extracted, ShrinkError> {
        let used = match trusted_used_ranges(disk, p.offset, p.size) {
            Some(u) => u,
            None => {
                reporter.detail(&format!(
                    "{}: the filesystem is not clean; copying all of it",
                    p.name
                ));
                vec![Range {
                    start: 0,
                    end: p.size,
                }]
            }
        };
        let bytes: u64 = used.iter().map(|r| r.end - r.start).sum();
        workdir.ensure_space(bytes, &format!("a copy of the filesystem on {}", p.name))?;
        let file_name = format!("the extracted copy of {}", p.name);
        let disk_name = disk_name(disk, workdir);
        let temp = tempfile::Builder::new()
            .prefix(&format!("{}-", p.file_stem()))
            .suffix(".ext")
            .tempfile_in(workdir.path())
            .map_err(io_err(format!(
                "create {file_name} under {}",
                workdir.parent().display()
            )))?;
        let (out, file_path) = temp.into_parts();
        out.set_len(p.size)
            .map_err(io_err(format!("extend {file_name}")))?;
        let src = File::open(disk).map_err(io_err(format!("open {disk_name}")))?;
        let task = reporter.task(
            &format!("Extracting the filesystem of {}", p.name),
            bytes,
            snf_core::Unit::Bytes,
        );
        for r in &used {
            copy_range(
                &src,
                p.offset + r.start,
                &out,
                r.start,
                r.end - r.start,
                |n| task.inc(n),
            )
            .map_err(|e| e.context(&disk_name, &file_name))?;
        }
        task.finish("done");
        Ok(Extracted {
            file_path,
            file_name,
            disk: disk.to_path_buf(),
            disk_name,
            volume: p.name.clone(),
            offset: p.offset,
        })
    }

    pub(super) fn path(&self) -> &Path {
        &self.file_path
    }

    /// How messages name the extracted file.
    pub(super) fn file_name(&self) -> &str {
        &self.file_name
    }

    /// Writes the resized filesystem's used blocks back into the partition and zeroes
    /// the rest of its first `part_bytes` bytes.
    pub(super) fn copy_back(&self, part_bytes: u64) -> Result<(), ShrinkError> {
        let used = trusted_used_ranges(&self.file_path, 0, part_bytes).ok_or_else(|| {
            ShrinkError::NotClean {
                volume: self.volume.clone(),
            }
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
            copy_range(
                &src,
                r.start,
                &dst,
                self.offset + r.start,
                r.end - r.start,
                |_| {},
            )
            .map_err(|e| e.context(&self.file_name, &self.disk_name))?;
        }
        for r in complement(&used, part_bytes) {
            zero_range(&dst, self.offset + r.start..self.offset + r.end)?;
        }
        // No fsync: the disk is read back through the page cache, and a private copy
        // need not reach the platter at all.
        Ok(())
    }
}
