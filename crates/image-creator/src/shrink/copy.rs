//! Copying and zeroing byte ranges of the disk, holes kept.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;

use snf_core::cancel::{self, Cancelled};

use super::{io_err, ShrinkError};

/// A failed copy: which side failed.
pub(crate) enum CopyError {
    Read(io::Error),
    Write(io::Error),
    Cancelled,
}

impl CopyError {
    /// As an I/O error (cancellation is `Interrupted`), for callers outside shrinking.
    pub(crate) fn into_io(self) -> io::Error {
        match self {
            CopyError::Read(e) | CopyError::Write(e) => e,
            CopyError::Cancelled => io::Error::from(io::ErrorKind::Interrupted),
        }
    }

    pub(super) fn context(self, from: &str, to: &str) -> ShrinkError {
        match self {
            CopyError::Read(e) => io_err(format!("read {from}"))(e),
            CopyError::Write(e) => io_err(format!("write {to}"))(e),
            CopyError::Cancelled => ShrinkError::Cancelled(Cancelled),
        }
    }
}

/// What [`copy_range`] does with an all-zero chunk when it copies by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Zeros {
    /// Leave it unwritten: the target is a new sparse file, where it reads as zeros.
    Skip,
    /// Write it: the target replaces what was there before.
    Write,
}

/// Copies `len` bytes: inside the kernel where it can, else by hand, all-zero chunks
/// handled as `zeros` says.
pub(crate) fn copy_range(
    src: &File,
    from: u64,
    dst: &File,
    to: u64,
    len: u64,
    zeros: Zeros,
    mut progress: impl FnMut(u64),
) -> Result<(), CopyError> {
    if cancel::is_requested() {
        return Err(CopyError::Cancelled);
    }
    // Inside the kernel where it can: no trip of the data through user space.
    if snf_disk::kernel_copy(src, from, dst, to, len).map_err(CopyError::Write)? {
        progress(len);
        return Ok(());
    }
    const CHUNK: u64 = 1 << 20;
    let mut buf = vec![0u8; CHUNK.min(len) as usize];
    let mut done = 0;
    while done < len {
        if cancel::is_requested() {
            return Err(CopyError::Cancelled);
        }
        let n = (len - done).min(CHUNK) as usize;
        let chunk = &mut buf[..n];
        src.read_exact_at(chunk, from + done)
            .map_err(CopyError::Read)?;
        if zeros == Zeros::Write || chunk.iter().any(|&b| b != 0) {
            dst.write_all_at(chunk, to + done)
                .map_err(CopyError::Write)?;
        }
        done += n as u64;
        progress(n as u64);
    }
    Ok(())
}

/// Makes `range` of `file` read as zeros: punches a hole where the filesystem can,
/// else writes zeros.
pub(super) fn zero_range(file: &File, range: Range<u64>) -> Result<(), ShrinkError> {
    fill_zeros(file, range).map_err(|e| match e.kind() {
        io::ErrorKind::Interrupted => ShrinkError::Cancelled(Cancelled),
        _ => io_err("zero the free space of the disk")(e),
    })
}

/// [`zero_range`] with I/O errors as they are (cancellation is `Interrupted`).
pub(crate) fn fill_zeros(file: &File, range: Range<u64>) -> io::Result<()> {
    if range.start >= range.end {
        return Ok(());
    }
    let len = range.end - range.start;
    if snf_disk::punch_hole(file, range.clone()).is_ok() {
        return Ok(());
    }
    const CHUNK: u64 = 1 << 20;
    let zeros = vec![0u8; CHUNK.min(len) as usize];
    let mut pos = range.start;
    while pos < range.end {
        if cancel::is_requested() {
            return Err(io::Error::from(io::ErrorKind::Interrupted));
        }
        let n = (range.end - pos).min(CHUNK) as usize;
        file.write_all_at(&zeros[..n], pos)?;
        pos += n as u64;
    }
    Ok(())
}
