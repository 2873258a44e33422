//! The new table: the disk ends 1 MiB after the last partition (plus the GPT backup),
//! and nothing of what lay past that end reaches the image.

use std::path::Path;

use snf_disk::partition::Layout;

use super::copy::zero_range;
use super::{io_err, open_rw, ShrinkError, ShrinkOptions};

/// Zeroes what lies between the last partition and the new end, writes the table of
/// `next` for the shrunk disk and returns its size.
pub(super) fn rewrite(
    disk: &Path,
    name: &str,
    next: &mut Layout,
    old_size: u64,
    opts: &ShrinkOptions<'_>,
) -> Result<u64, ShrinkError> {
    let table_err = |source| ShrinkError::Table {
        disk: name.to_string(),
        source,
    };
    let new_size = next.shrunk_disk_size();
    // What lies between the last partition and the new end (old filesystem blocks, a
    // removed swap area) would otherwise reach the image.
    let payload_end = next.payload_end();
    if payload_end < new_size.min(old_size) {
        let file = open_rw(disk, name)?;
        zero_range(&file, payload_end..new_size.min(old_size))?;
    }
    next.write_file(disk, new_size).map_err(table_err)?;
    // A private copy in the work directory needs no durability; the user's own disk
    // (--no-snapshot) does.
    if !disk.starts_with(opts.workdir.path()) {
        open_rw(disk, name)?
            .sync_all()
            .map_err(io_err(format!("sync {name}")))?;
    }
    Ok(new_size)
}
