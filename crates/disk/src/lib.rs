//! Source media, snapshot, partition tables and the diskdump.
//!
//! A run goes through these in order (no root needed for image files):
//!
//! ```no_run
//! # use std::collections::BTreeMap;
//! # use std::path::Path;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use snf_disk::{dump, write_side_files, SnapshotMode, Source, WorkDir, WorkingDisk};
//! let reporter = snf_core::report::Quiet;
//! let source = Source::examine("disk.qcow2")?; // format, virtual size, sector size
//! let workdir = WorkDir::create(None)?; // or Some(--tmpdir)
//! let mut disk = WorkingDisk::open(&source, &workdir, SnapshotMode::Snapshot, &reporter)?;
//! disk.make_writable(&reporter)?; // before sysprep/shrink write anything
//! let out = Path::new("disk.diskdump");
//! let summary = dump(&disk, disk.size(), &[], out, &reporter)?;
//! write_side_files(out, "disk.diskdump", &summary.md5_hex, &BTreeMap::new())?;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
pub mod partition;

pub mod dump;
pub mod host;
pub mod loopdev;
pub mod lvm;
pub mod media;
pub mod snapshot;
mod sparse;
pub mod workdir;

pub use dump::{
    dump, dump_named, finish_in_place, finish_in_place_named, md5_of, output_files,
    write_side_files, DumpError, DumpSummary,
};
pub use media::{MediaError, Source, SourceKind};
pub use snapshot::{SnapshotError, SnapshotMode, WorkingDisk};
pub use sparse::{data_ranges, kernel_copy, punch_hole};
pub use workdir::{WorkDir, WorkDirError, WriteError};
