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

/// A sparse file of `size` bytes named `name` in `dir`, with the records of `data`
/// written into it: `[sector: u16 LE][length: u16 LE][bytes]`, 512-byte sectors, each
/// record cut at the end of the input and of the file. The file targets (LVM PVs, UFS)
/// read their volume through a path, as the tool does.
pub fn sparse_image_file(
    dir: &std::path::Path,
    name: &str,
    size: u64,
    data: &[u8],
) -> std::path::PathBuf {
    use std::os::unix::fs::FileExt;
    let path = dir.join(name);
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(size).unwrap();
    let mut rest = data;
    while rest.len() >= 4 {
        let sector = u64::from(u16::from_le_bytes([rest[0], rest[1]]));
        let len = usize::from(u16::from_le_bytes([rest[2], rest[3]])).min(rest.len() - 4);
        let at = sector * 512;
        if at < size {
            let n = len.min((size - at) as usize);
            file.write_all_at(&rest[4..4 + n], at).unwrap();
        }
        rest = &rest[4 + len..];
    }
    path
}
