//! What the fuzz targets share: an in-memory sparse disk for the partition tables, a
//! guest tree on the host for the parsers that read guest files, and the split of one
//! input into several files.

#![forbid(unsafe_code)]

pub mod disk;
pub mod guest;

/// Cuts an input into at most `n` parts at NUL bytes: one fuzz input feeds several
/// files (NUL is rare in the text files these parsers read, so the split costs little).
pub fn sections(data: &[u8], n: usize) -> Vec<&[u8]> {
    data.splitn(n, |b| *b == 0).collect()
}

/// A scratch directory in memory when the host has /dev/shm: the guest targets write
/// their files anew for every input, and a disk under load would make them crawl.
pub fn scratch_dir() -> tempfile::TempDir {
    tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .expect("a scratch directory")
}
