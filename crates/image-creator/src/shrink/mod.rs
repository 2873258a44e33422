//! Shrinking the disk, and finding the bytes no filesystem uses.
//!
//! [`shrink`] is the original's `Image.shrink` with its bugs fixed: trailing swap
//! partitions are removed (and recorded as `SWAP=<number>:<MiB>`), an emptied extended
//! partition is removed, the last ext2/3/4 filesystem is checked (`e2fsck -fy`), shrunk
//! to its minimum plus 8 MiB (`resize2fs`), its partition is resized in place (GPT
//! entries keep their type GUID, PARTUUID and name; logical partitions and 4096-byte
//! sectors work) and the filesystem is grown to fill it exactly; the table is rewritten
//! for a disk that ends 1 MiB after the last partition (plus the GPT backup), with valid
//! checksums everywhere. Other filesystems are not shrunk, with a warning saying why;
//! the disk is still cut after the last partition. The last NTFS volume is shrunk with
//! ntfsresize on an extracted copy (`ntfs.rs`), unless Windows did not shut it down
//! fully (dirty, hibernated, fast startup): that is refused before anything changes.
//!
//! resize2fs is never given the `image?offset=N` form: on a regular file it truncates
//! the file to the new filesystem size without the offset (ecosystem notes, B.9). It
//! works instead on one of:
//! * [`Method::Loop`]: a loop device covering just the partition (`losetup -o
//!   --sizelimit`; root), detached by a guard;
//! * [`Method::Extract`]: the partition's used blocks copied to their own sparse file in
//!   the work directory, checked and resized there at offset 0 (where truncating the
//!   file to the filesystem size is resize2fs's documented, correct behaviour), and the
//!   result's used blocks copied back; no privileges needed. e2fsck and resize2fs run
//!   under `eatmydata` when it is installed: the file is scratch, and their syncs would
//!   write it all back to the disk for nothing.
//!
//! The default without root is extraction. As root it is extraction for a private copy
//! whose filesystem fits in a quarter of the available memory when `eatmydata` is there
//! (the copy was just written and is still dirty in the page cache: a loop device or a
//! sync would first write all of it back, which costs more than extracting it in
//! memory), else a loop device (a larger copy is mostly on the disk already, where
//! extracting would double the I/O; the user's own disk is not dirty at all).
//!
//! A single-device btrfs as the last partition is shrunk by the kernel in the libguestfs
//! appliance (`btrfs.rs`), then its partition.
//!
//! [`free_ranges`] lists the bytes of a disk that no filesystem uses (free blocks of
//! every clean ext2/3/4 filesystem, free xfs and btrfs space read from their own
//! allocation structures, all of a swap area but its header page), so that the
//! snapshot copy and the dump can treat them as zeros: deleted data never reaches the
//! image, and the image is as small as the data.
//!
//! An LVM2 physical volume as the last partition is shrunk too (`lvm.rs`): the ext
//! filesystem of the last LV on it that is not swap, that LV, the PV's allocation
//! (compacted), the PV and its partition; swap LVs are kept.
//!
//! Out of scope: a SYSLINUX boot partition that is the last partition would need
//! `extlinux -U` after its filesystem moved; ext, btrfs and NTFS are the only filesystems
//! shrunk.

mod btrfs;
pub(crate) mod copy;
mod ext;
mod extract;
mod free;
mod lvm;
mod method;
mod ntfs;
mod plan;
mod table;

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use snf_core::cancel::Cancelled;
use snf_core::command::CommandError;
use snf_core::Reporter;
use snf_disk::partition::{Layout, PartitionError, MIB};
use snf_disk::{WorkDir, WorkDirError};
use snf_guestfs::probe::FsType;

pub use ext::NO_SYNC_WRAPPER;
pub use free::free_ranges;
pub use method::Method;
use plan::Trailing;

/// The environment variable that forces a [`Method`] (`loop` or `extract`).
pub const METHOD_ENV: &str = "SNF_SHRINK_METHOD";

/// Headroom left in a shrunk filesystem above resize2fs's minimum (as the original).
pub const HEADROOM: u64 = 8 * MIB;

/// Why shrinking failed.
#[derive(Debug, thiserror::Error)]
pub enum ShrinkError {
    /// [`METHOD_ENV`] holds something else than `loop`, `extract` or `auto`.
    #[error("{METHOD_ENV}={0}: expected loop, extract or auto")]
    BadMethod(String),
    /// The partition table cannot be changed as needed.
    #[error("cannot change the partition table of {disk}: {source}")]
    Table {
        /// The disk as the user knows it (see [`disk_name`]).
        disk: String,
        #[source]
        source: PartitionError,
    },
    /// e2fsck found errors it could not correct.
    #[error("the ext filesystem on partition {partition} has errors e2fsck could not correct (exit code {code}): {detail}")]
    Fsck {
        partition: u32,
        code: i32,
        detail: String,
    },
    /// An e2fsprogs or util-linux tool failed. The tool saw the filesystem as `dev` (an
    /// extracted scratch file or a loop device), which the message calls the partition.
    #[error("partition {partition}: {}", hide_dev(&.source.to_string(), .dev, *.partition))]
    Tool {
        partition: u32,
        dev: PathBuf,
        #[source]
        source: CommandError,
    },
    /// resize2fs said something that could not be understood.
    #[error("partition {partition}: unexpected output from resize2fs -P: {output}")]
    Estimate { partition: u32, output: String },
    /// The filesystem cannot be read through libext2fs (opened as `dev`, see `Tool`).
    #[error("partition {partition}: {}", hide_dev(&.source.to_string(), .dev, *.partition))]
    Ext {
        partition: u32,
        dev: PathBuf,
        #[source]
        source: snf_guestfs::Error,
    },
    /// The NTFS volume cannot be shrunk: Windows did not shut it down fully (the message
    /// says what to do), it cannot be read, or ntfsresize left it unusable.
    #[error("partition {partition}: {msg}")]
    Ntfs { partition: u32, msg: String },
    /// After resizing, the filesystem is not marked clean (the deploy side requires it).
    #[error("partition {partition}: the ext filesystem is not clean after resizing")]
    NotClean { partition: u32 },
    /// No loop device could be attached although [`Method::Loop`] was asked for.
    #[error("cannot attach a loop device to partition {partition} of {disk}: {source}")]
    Loop {
        partition: u32,
        disk: String,
        #[source]
        source: CommandError,
    },
    /// Reading or writing the disk or the extracted copy failed.
    #[error("cannot {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    /// Not enough room in the work directory for the extracted filesystem.
    #[error(transparent)]
    WorkDir(#[from] WorkDirError),
    /// Reading, editing or writing the LVM2 metadata or data of a PV failed.
    #[error("partition {partition}: {source}")]
    Lvm {
        partition: u32,
        #[source]
        source: snf_disk::lvm::LvmError,
    },
    /// The libguestfs appliance could not resize a btrfs filesystem.
    #[error("partition {partition}: {source}")]
    Appliance {
        partition: u32,
        #[source]
        source: snf_guestfs::Error,
    },
    /// The user cancelled.
    #[error(transparent)]
    Cancelled(#[from] Cancelled),
}

impl ShrinkError {
    /// Whether the work stopped because the user cancelled.
    pub fn is_cancelled(&self) -> bool {
        matches!(
            self,
            ShrinkError::Cancelled(_)
                | ShrinkError::Tool {
                    source: CommandError::Cancelled { .. },
                    ..
                }
                | ShrinkError::Lvm {
                    source: snf_disk::lvm::LvmError::Cancelled(_),
                    ..
                }
        )
    }
}

/// `text` (a tool's or libext2fs's message) with the path it was given for the
/// filesystem of `partition` replaced by words: that path is a scratch file in the work
/// directory or a loop device, and means nothing to the user.
fn hide_dev(text: &str, dev: &Path, partition: u32) -> String {
    let dev = dev.display().to_string();
    if dev.is_empty() {
        return text.to_string();
    }
    text.replace(&dev, &format!("the filesystem of partition {partition}"))
}

/// How messages name the disk being shrunk: a private copy in the work directory by
/// what it is, the user's own disk (`--no-snapshot`) by its path.
pub fn disk_name(disk: &Path, workdir: &WorkDir) -> String {
    if disk.starts_with(workdir.path()) {
        "the private working copy".to_string()
    } else {
        disk.display().to_string()
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> ShrinkError {
    let what = what.into();
    move |source| ShrinkError::Io { what, source }
}

/// A partition [`shrink`] removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    /// Its number before removal.
    pub number: u32,
    /// `swap` or `extended`.
    pub what: &'static str,
    /// Its size in bytes.
    pub size: u64,
}

/// A filesystem [`shrink`] resized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShrunkFs {
    /// The partition number.
    pub partition: u32,
    /// `ext2`, `ext3`, `ext4`, `btrfs` or `ntfs`.
    pub fs: &'static str,
    /// Filesystem size before, in bytes.
    pub old_bytes: u64,
    /// Filesystem size after, in bytes (it fills the partition but for less than a
    /// block when blocks are larger than sectors).
    pub new_bytes: u64,
    /// Partition size after, in bytes (a whole number of sectors).
    pub partition_bytes: u64,
    /// How resize2fs reached it ([`Method::Appliance`] for btrfs).
    pub method: Method,
}

/// What [`shrink`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShrinkOutcome {
    /// Trailing partitions removed, in the order they were removed.
    pub removed: Vec<Removed>,
    /// The `SWAP` property (`<number>:<MiB>`) when a trailing swap partition was removed.
    pub swap: Option<String>,
    /// The last filesystem, when it was shrunk.
    pub shrunk: Option<ShrunkFs>,
    /// Why the last partition was not shrunk (also reported as a warning).
    pub not_shrunk: Option<String>,
    /// Disk size before, in bytes.
    pub old_size: u64,
    /// Disk size after: what the image must hold.
    pub new_size: u64,
}

/// How [`shrink`] runs.
#[derive(Debug, Clone, Copy)]
pub struct ShrinkOptions<'a> {
    /// Where extracted filesystems go.
    pub workdir: &'a WorkDir,
    /// `None`: the default (see the module documentation).
    pub method: Option<Method>,
}

/// Shrink the disk image `disk` (a writable raw file or block device) whose table is
/// `layout`; see the module documentation. `layout` is updated to the table written.
///
/// The disk itself is not truncated (the caller cuts it or dumps only
/// [`ShrinkOutcome::new_size`] bytes); the bytes from the end of the last partition to
/// the new size are zeroed, so nothing of a removed swap partition or of the old end of
/// the filesystem reaches the image. Nothing may have the guest's filesystems open.
pub fn shrink(
    disk: &Path,
    layout: &mut Layout,
    opts: &ShrinkOptions<'_>,
    reporter: &dyn Reporter,
) -> Result<ShrinkOutcome, ShrinkError> {
    let name = disk_name(disk, opts.workdir);
    let table_err = |source| ShrinkError::Table {
        disk: name.clone(),
        source,
    };
    let old_size = layout.disk_size();
    let mut next = layout.clone();

    let Trailing {
        removed,
        swap,
        last,
    } = plan::drop_trailing(disk, &name, &mut next, reporter)?;

    let mut shrunk = None;
    let mut not_shrunk = None;
    if let Some((last, found)) = &last {
        // A filesystem shrunk in its partition: what it became, or why it was kept.
        let outcome = if found.is_ext() {
            Some(Ok(ext::shrink_ext(
                disk, &next, last, *found, opts, reporter,
            )?))
        } else if *found == FsType::Btrfs {
            Some(match btrfs::shrink_btrfs(disk, &next, last, reporter)? {
                btrfs::Outcome::Shrunk(fs) => Ok(fs),
                btrfs::Outcome::Kept(why) => Err(why),
            })
        } else if *found == FsType::Ntfs {
            Some(
                ntfs::shrink_ntfs(disk, &next, last, opts, reporter)?.ok_or_else(|| {
                    format!(
                        "Unable to shrink partition {}: its ntfs filesystem is nearly full",
                        last.number
                    )
                }),
            )
        } else {
            None
        };
        if let Some(outcome) = outcome {
            match outcome {
                Ok(fs) => {
                    let ss = u64::from(next.sector_size());
                    let new_end = last.start + fs.partition_bytes / ss - 1;
                    if new_end != last.end {
                        next.set_end(last.number, new_end).map_err(table_err)?;
                    }
                    shrunk = Some(fs);
                }
                Err(why) => {
                    reporter.warn(&why);
                    not_shrunk = Some(why);
                }
            }
        } else if *found == FsType::LvmPv {
            match lvm::shrink_pv(disk, &next, last, opts, reporter)? {
                Some(pv) => {
                    let ss = u64::from(next.sector_size());
                    let new_end = last.start + pv.partition_bytes / ss - 1;
                    if new_end != last.end {
                        next.set_end(last.number, new_end).map_err(table_err)?;
                    }
                    shrunk = pv.fs;
                }
                None => {
                    not_shrunk = Some(format!(
                    "Unable to shrink partition {}: its LVM volume group cannot be changed safely",
                    last.number
                ))
                }
            }
        } else {
            let why = if *found == FsType::BsdLabel {
                format!(
                    "Unable to shrink partition {}: it holds a BSD disklabel, whose slices are not shrunk",
                    last.number
                )
            } else if *found == FsType::Unknown {
                format!(
                    "Unable to shrink partition {}: could not detect its file system",
                    last.number
                )
            } else {
                format!(
                    "Unable to shrink partition {}: don't know how to shrink {} file systems",
                    last.number,
                    found.name()
                )
            };
            reporter.warn(&why);
            not_shrunk = Some(why);
        }
    }

    let new_size = table::rewrite(disk, &name, &mut next, old_size, opts)?;
    *layout = next;
    reporter.info(&format!("Image size is {} MiB", new_size.div_ceil(MIB)));
    Ok(ShrinkOutcome {
        removed,
        swap,
        shrunk,
        not_shrunk,
        old_size,
        new_size,
    })
}

fn open_rw(disk: &Path, name: &str) -> Result<File, ShrinkError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(disk)
        .map_err(io_err(format!("open {name} for writing")))
}
