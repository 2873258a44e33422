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
//! the disk is still cut after the last partition.
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
//! [`free_ranges`] lists the bytes of a disk that no filesystem uses (free blocks of
//! every clean ext2/3/4 filesystem, all of a swap area but its header page), so that the
//! snapshot copy and the dump can treat them as zeros: deleted data never reaches the
//! image, and the image is as small as the data.
//!
//! Out of scope: a SYSLINUX boot partition that is the last partition would need
//! `extlinux -U` after its filesystem moved; ext is the only filesystem shrunk anyway.

use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use snf_core::cancel::{self, Cancelled};
use snf_core::command::{self, CommandError};
use snf_core::Reporter;
use snf_disk::partition::{Layout, Partition, PartitionError, MIB};
use snf_disk::{WorkDir, WorkDirError};
use snf_guestfs::probe::{self, FsType};
use snf_guestfs::ExtFs;

/// The environment variable that forces a [`Method`] (`loop` or `extract`).
pub const METHOD_ENV: &str = "SNF_SHRINK_METHOD";

/// Headroom left in a shrunk filesystem above resize2fs's minimum (as the original).
pub const HEADROOM: u64 = 8 * MIB;

/// At most this many `resize2fs -P` / `resize2fs` rounds.
const ESTIMATE_ROUNDS: usize = 3;

/// How resize2fs gets to the filesystem without the `?offset=` form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// A loop device over the partition (needs root and loop devices).
    Loop,
    /// A copy of the partition's used blocks in the work directory (no privileges).
    Extract,
}

impl Method {
    /// The method named by [`METHOD_ENV`], if set; `None` means the default (see the
    /// module documentation).
    pub fn from_env() -> Result<Option<Method>, ShrinkError> {
        match std::env::var(METHOD_ENV) {
            Err(_) => Ok(None),
            Ok(v) => match v.trim() {
                "" | "auto" => Ok(None),
                "loop" => Ok(Some(Method::Loop)),
                "extract" => Ok(Some(Method::Extract)),
                other => Err(ShrinkError::BadMethod(other.to_string())),
            },
        }
    }

    /// `loop` or `extract`.
    pub fn name(self) -> &'static str {
        match self {
            Method::Loop => "loop",
            Method::Extract => "extract",
        }
    }
}

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
    /// `ext2`, `ext3` or `ext4`.
    pub fs: &'static str,
    /// Filesystem size before, in bytes.
    pub old_bytes: u64,
    /// Filesystem size after, in bytes (it fills the partition but for less than a
    /// block when blocks are larger than sectors).
    pub new_bytes: u64,
    /// Partition size after, in bytes (a whole number of sectors).
    pub partition_bytes: u64,
    /// How resize2fs reached it.
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
    let mut removed = Vec::new();
    let mut swap = None;
    let mut next = layout.clone();

    // Trailing swap partitions and emptied extended partitions go.
    let last = loop {
        cancel::check()?;
        let Some(last) = next.last_partition().cloned() else {
            break None;
        };
        if last.is_extended() {
            next.delete(last.number).map_err(table_err)?;
            reporter.info(&format!(
                "Removing empty extended partition {}",
                last.number
            ));
            removed.push(Removed {
                number: last.number,
                what: "extended",
                size: last.size(),
            });
            continue;
        }
        let found = probe_partition(disk, &name, &last)?;
        if found == FsType::Swap {
            let mib = last.size().div_ceil(MIB);
            next.delete(last.number).map_err(table_err)?;
            reporter.info(&format!(
                "Removing swap partition {} ({mib} MiB); the deployment re-creates it \
                 from SWAP={}:{mib}",
                last.number, last.number
            ));
            // Like the original, the value of the last one removed wins: the lowest
            // number, the one the deploy side can re-create next to what is left (MBR
            // logical numbers must stay contiguous).
            swap = Some(format!("{}:{mib}", last.number));
            removed.push(Removed {
                number: last.number,
                what: "swap",
                size: last.size(),
            });
            continue;
        }
        break Some((last, found));
    };
    trim_extended(&mut next).map_err(table_err)?;

    let mut shrunk = None;
    let mut not_shrunk = None;
    if let Some((last, found)) = &last {
        if found.is_ext() {
            let fs = shrink_ext(disk, &next, last, *found, opts, reporter)?;
            let ss = u64::from(next.sector_size());
            let new_end = last.start + fs.partition_bytes / ss - 1;
            if new_end != last.end {
                next.set_end(last.number, new_end).map_err(table_err)?;
            }
            shrunk = Some(fs);
        } else {
            let why = if *found == FsType::Unknown {
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

    let new_size = next.shrunk_disk_size();
    // What lies between the last partition and the new end (old filesystem blocks, a
    // removed swap area) would otherwise reach the image.
    let payload_end = next.payload_end();
    if payload_end < new_size.min(old_size) {
        let file = open_rw(disk, &name)?;
        zero_range(&file, payload_end..new_size.min(old_size))?;
    }
    next.write_file(disk, new_size).map_err(table_err)?;
    // A private copy in the work directory needs no durability; the user's own disk
    // (--no-snapshot) does.
    if !disk.starts_with(opts.workdir.path()) {
        open_rw(disk, &name)?
            .sync_all()
            .map_err(io_err(format!("sync {name}")))?;
    }
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

/// An extended partition whose logical partitions were removed from its end ends with
/// the last one left, so the image can be cut there.
fn trim_extended(layout: &mut Layout) -> Result<(), PartitionError> {
    let Some(ext) = layout.extended().cloned() else {
        return Ok(());
    };
    let Some(last_logical) = layout.logicals().map(|p| p.end).max() else {
        return Ok(());
    };
    if last_logical < ext.end {
        layout.set_end(ext.number, last_logical)?;
    }
    Ok(())
}

fn probe_partition(disk: &Path, name: &str, p: &Partition) -> Result<FsType, ShrinkError> {
    probe::probe_file(disk, p.offset(), p.size())
        .map(|found| found.fs_type)
        .map_err(io_err(format!("read partition {} of {name}", p.number)))
}

fn open_rw(disk: &Path, name: &str) -> Result<File, ShrinkError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(disk)
        .map_err(io_err(format!("open {name} for writing")))
}

/// Shrinks the ext filesystem on partition `p` and returns its new size, which is a
/// whole number of sectors: the partition must end exactly there.
fn shrink_ext(
    disk: &Path,
    layout: &Layout,
    p: &Partition,
    kind: FsType,
    opts: &ShrinkOptions<'_>,
    reporter: &dyn Reporter,
) -> Result<ShrunkFs, ShrinkError> {
    // A private copy was just written and, while it fits in memory, sits dirty in the
    // page cache: attaching a loop device to it, or e2fsck and resize2fs syncing it,
    // would first write all of it back to the disk, which costs more than extracting the
    // filesystem (a copy in memory) to a scratch file whose syncs eatmydata turns off.
    // A copy larger than that is mostly on the disk already, where extracting it would
    // double the I/O; and the user's own disk (--no-snapshot) is not dirty: a loop
    // device is cheapest for both.
    let private_copy = disk.starts_with(opts.workdir.path());
    let loop_usable = loop_devices_usable();
    let no_sync_available = command::exists(NO_SYNC_WRAPPER);
    let method = match opts.method {
        Some(m) => m,
        None if !loop_usable => Method::Extract,
        None if private_copy && no_sync_available && fits_in_page_cache(used_bytes(disk, p)) => {
            Method::Extract
        }
        None => Method::Loop,
    };
    reporter.info(&format!(
        "Shrinking the {} filesystem on partition {} ...",
        kind.name(),
        p.number
    ));
    let ss = u64::from(layout.sector_size());
    let target = match method {
        Method::Loop => match LoopDevice::attach(disk, p.offset(), p.size()) {
            Ok(dev) => Target::Loop(dev),
            Err(source) if opts.method.is_none() => {
                reporter.detail(&format!(
                    "no loop device ({source}); working on an extracted copy instead"
                ));
                Target::Extract(Extracted::new(disk, p, opts.workdir, reporter)?)
            }
            Err(source) => {
                return Err(ShrinkError::Loop {
                    partition: p.number,
                    disk: disk_name(disk, opts.workdir),
                    source,
                })
            }
        },
        Method::Extract => Target::Extract(Extracted::new(disk, p, opts.workdir, reporter)?),
    };
    let method = match target {
        Target::Loop(_) => Method::Loop,
        Target::Extract(_) => Method::Extract,
    };
    let dev = target.path().to_path_buf();
    let n = p.number;
    // The extracted file is scratch: nothing in it needs to reach the platter.
    let tools = E2fsTools {
        no_sync: matches!(target, Target::Extract(_)) && no_sync_available,
    };
    let through = match &target {
        Target::Loop(_) => dev.display().to_string(),
        Target::Extract(x) => x.file_name.clone(),
    };
    reporter.detail(&format!(
        "partition {n}: resizing through {through} ({}{})",
        method.name(),
        if tools.no_sync {
            ", without syncs: eatmydata"
        } else {
            ""
        }
    ));

    tools.fsck(&dev, n, reporter)?;
    let info = ExtFs::open(&dev, 0, false)
        .map_err(|source| ShrinkError::Ext {
            partition: n,
            dev: dev.clone(),
            source,
        })?
        .info();
    let bs = u64::from(info.block_size);
    let old_blocks = info.blocks_count;
    // resize2fs's estimate is pessimistic for a filesystem spread over many groups and
    // tightens once it is smaller: shrink again while that gains more than 1%. Each
    // round keeps the headroom, so resize2fs never works at its bare minimum.
    let mut wanted = old_blocks;
    for _ in 0..ESTIMATE_ROUNDS {
        cancel::check()?;
        let target = tools.min_blocks(&dev, n)?.saturating_add(HEADROOM / bs);
        if target >= wanted || wanted - target < wanted / 100 {
            break;
        }
        tools.resize2fs(&dev, n, target)?;
        wanted = target;
    }
    // The partition ends on a sector boundary; the filesystem fills it exactly.
    let part_bytes = (wanted * bs).div_ceil(ss) * ss;
    let part_bytes = part_bytes.min(p.size());
    let fill = part_bytes / bs;
    if fill != wanted {
        tools.resize2fs(&dev, n, fill)?;
    }
    let after = ExtFs::open(&dev, 0, false)
        .map_err(|source| ShrinkError::Ext {
            partition: n,
            dev: dev.clone(),
            source,
        })?
        .info();
    if !after.is_clean() || after.has_errors() {
        return Err(ShrinkError::NotClean { partition: n });
    }
    if let Target::Extract(x) = &target {
        x.copy_back(part_bytes)?;
    }
    target.close();
    let new_bytes = after.blocks_count * bs;
    reporter.info(&format!(
        "Partition {n}: {} filesystem shrunk from {} MiB to {} MiB",
        kind.name(),
        (old_blocks * bs).div_ceil(MIB),
        new_bytes.div_ceil(MIB)
    ));
    Ok(ShrunkFs {
        partition: n,
        fs: kind.name(),
        old_bytes: old_blocks * bs,
        new_bytes,
        partition_bytes: part_bytes,
        method,
    })
}

/// Bytes the ext filesystem on `p` uses (all of the partition when it cannot be read).
fn used_bytes(disk: &Path, p: &Partition) -> u64 {
    ExtFs::open(disk, p.offset(), false)
        .map(|fs| {
            let info = fs.info();
            info.blocks_count.saturating_sub(info.free_blocks) * u64::from(info.block_size)
        })
        .unwrap_or(p.size())
}

/// Whether `bytes` of freshly written data are likely still in the page cache: they
/// take at most a quarter of the memory available now (`MemAvailable`).
fn fits_in_page_cache(bytes: u64) -> bool {
    let available = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MemAvailable:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    });
    available.is_some_and(|kib| bytes <= kib * 1024 / 4)
}

/// Whether a loop device may be attached here: root, and the loop control device.
fn loop_devices_usable() -> bool {
    rustix::process::geteuid().is_root() && Path::new("/dev/loop-control").exists()
}

/// The wrapper that runs a program with its syncs turned off (Debian's `eatmydata`).
pub const NO_SYNC_WRAPPER: &str = "eatmydata";

/// e2fsprogs' programs, run on a scratch file without syncs when `no_sync`.
struct E2fsTools {
    no_sync: bool,
}

impl E2fsTools {
    fn command(&self, program: &str) -> Command {
        if self.no_sync {
            let mut c = Command::new(NO_SYNC_WRAPPER);
            c.arg(program);
            c
        } else {
            Command::new(program)
        }
    }

    /// `e2fsck -fy`: exit codes 0 (clean) and 1 (errors corrected) are fine.
    fn fsck(&self, dev: &Path, partition: u32, reporter: &dyn Reporter) -> Result<(), ShrinkError> {
        let out = command::run_unchecked(self.command("e2fsck").arg("-fy").arg(dev)).map_err(
            |source| ShrinkError::Tool {
                partition,
                dev: dev.to_path_buf(),
                source,
            },
        )?;
        match out.status.code() {
            Some(0) => Ok(()),
            Some(1) => {
                reporter.detail(&format!(
                    "partition {partition}: e2fsck corrected errors in the filesystem"
                ));
                Ok(())
            }
            code => Err(ShrinkError::Fsck {
                partition,
                code: code.unwrap_or(-1),
                detail: hide_dev(&last_lines(&out.stdout, &out.stderr), dev, partition),
            }),
        }
    }

    /// `resize2fs -P`: the estimated minimum size, in filesystem blocks.
    fn min_blocks(&self, dev: &Path, partition: u32) -> Result<u64, ShrinkError> {
        let out = command::run(self.command("resize2fs").arg("-P").arg(dev)).map_err(|source| {
            ShrinkError::Tool {
                partition,
                dev: dev.to_path_buf(),
                source,
            }
        })?;
        out.stdout
            .lines()
            .find_map(|l| {
                l.strip_prefix("Estimated minimum size of the filesystem:")
                    .and_then(|v| v.trim().parse::<u64>().ok())
            })
            .ok_or_else(|| ShrinkError::Estimate {
                partition,
                output: hide_dev(&last_lines(&out.stdout, &out.stderr), dev, partition),
            })
    }

    /// `resize2fs DEV BLOCKS` (a size without unit is in filesystem blocks).
    fn resize2fs(&self, dev: &Path, partition: u32, blocks: u64) -> Result<(), ShrinkError> {
        command::run(self.command("resize2fs").arg(dev).arg(blocks.to_string()))
            .map(|_| ())
            .map_err(|source| ShrinkError::Tool {
                partition,
                dev: dev.to_path_buf(),
                source,
            })
    }
}

fn last_lines(stdout: &str, stderr: &str) -> String {
    let lines: Vec<&str> = stdout
        .lines()
        .chain(stderr.lines())
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines[lines.len().saturating_sub(3)..].join(" / ")
}

enum Target {
    Loop(LoopDevice),
    Extract(Extracted),
}

impl Target {
    fn path(&self) -> &Path {
        match self {
            Target::Loop(l) => &l.dev,
            Target::Extract(x) => x.path(),
        }
    }

    /// Detach or remove now (the guards would do it anyway).
    fn close(self) {
        drop(self);
    }
}

/// A loop device over part of a file, detached when dropped.
struct LoopDevice {
    dev: PathBuf,
}

impl LoopDevice {
    fn attach(image: &Path, offset: u64, size: u64) -> Result<LoopDevice, CommandError> {
        let out = command::run(
            Command::new("losetup")
                .args(["-f", "--show", "-o", &offset.to_string(), "--sizelimit"])
                .arg(size.to_string())
                .arg(image),
        )?;
        let dev = out.stdout.trim();
        if dev.is_empty() {
            return Err(CommandError::Io {
                program: "losetup".into(),
                source: io::Error::other("it printed no device name"),
            });
        }
        Ok(LoopDevice {
            dev: PathBuf::from(dev),
        })
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        // udev or a prober may still hold the device for a moment after resize2fs.
        for attempt in 0..20 {
            if command::run(Command::new("losetup").arg("-d").arg(&self.dev)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50 * (attempt + 1)));
        }
    }
}

/// A partition's filesystem copied to its own sparse file in the work directory.
struct Extracted {
    /// Removes the file when dropped.
    file_path: tempfile::TempPath,
    /// How messages name the file (its own name is internal to the work directory).
    file_name: String,
    disk: PathBuf,
    /// How messages name the disk ([`disk_name`]).
    disk_name: String,
    partition: u32,
    offset: u64,
}

impl Extracted {
    /// Copies the used blocks of the (clean) filesystem on `p`, or the whole partition
    /// when its bitmaps cannot be trusted (unclean, journal to replay, errors).
    fn new(
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
        let bytes: u64 = used.iter().map(|r| r.end - r.start).sum();
        workdir.ensure_space(
            bytes,
            &format!("a copy of the filesystem on partition {}", p.number),
        )?;
        let file_name = format!("the extracted copy of partition {}", p.number);
        let disk_name = disk_name(disk, workdir);
        let temp = tempfile::Builder::new()
            .prefix(&format!("part{}-", p.number))
            .suffix(".ext")
            .tempfile_in(workdir.path())
            .map_err(io_err(format!(
                "create {file_name} under {}",
                workdir.parent().display()
            )))?;
        let (out, file_path) = temp.into_parts();
        out.set_len(p.size())
            .map_err(io_err(format!("extend {file_name}")))?;
        let src = File::open(disk).map_err(io_err(format!("open {disk_name}")))?;
        let task = reporter.task(
            &format!("Extracting the filesystem of partition {}", p.number),
            bytes,
            snf_core::Unit::Bytes,
        );
        for r in &used {
            copy_range(
                &src,
                p.offset() + r.start,
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
            partition: p.number,
            offset: p.offset(),
        })
    }

    fn path(&self) -> &Path {
        &self.file_path
    }

    /// Writes the resized filesystem's used blocks back into the partition and zeroes
    /// the rest of its first `part_bytes` bytes.
    fn copy_back(&self, part_bytes: u64) -> Result<(), ShrinkError> {
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

/// A failed copy: which side failed.
enum CopyError {
    Read(io::Error),
    Write(io::Error),
    Cancelled,
}

impl CopyError {
    fn context(self, from: &str, to: &str) -> ShrinkError {
        match self {
            CopyError::Read(e) => io_err(format!("read {from}"))(e),
            CopyError::Write(e) => io_err(format!("write {to}"))(e),
            CopyError::Cancelled => ShrinkError::Cancelled(Cancelled),
        }
    }
}

/// Copies `len` bytes: inside the kernel where it can, else by hand, leaving all-zero
/// chunks unwritten (holes stay holes).
fn copy_range(
    src: &File,
    from: u64,
    dst: &File,
    to: u64,
    len: u64,
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
        if chunk.iter().any(|&b| b != 0) {
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
fn zero_range(file: &File, range: Range<u64>) -> Result<(), ShrinkError> {
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
        cancel::check()?;
        let n = (range.end - pos).min(CHUNK) as usize;
        file.write_all_at(&zeros[..n], pos)
            .map_err(io_err("zero the free space of the disk"))?;
        pos += n as u64;
    }
    Ok(())
}

/// The byte ranges (relative to `offset`, within `size`) that the ext filesystem at
/// `offset` of `image` uses, when its bitmaps can be trusted: it opens, it is marked
/// clean, has no recorded errors and no journal to replay. `None` otherwise.
fn trusted_used_ranges(image: &Path, offset: u64, size: u64) -> Option<Vec<Range<u64>>> {
    let mut fs = ExtFs::open(image, offset, false).ok()?;
    let info = fs.info();
    if !info.is_clean() || info.has_errors() || info.needs_recovery() {
        return None;
    }
    let bs = u64::from(info.block_size);
    let limit = info.blocks_count.saturating_mul(bs).min(size);
    let used = fs.used_block_ranges().ok()?;
    let mut out: Vec<Range<u64>> = Vec::with_capacity(used.len());
    for (first, count) in used {
        let start = first.saturating_mul(bs).min(limit);
        let end = first.saturating_add(count).saturating_mul(bs).min(limit);
        if start < end {
            out.push(start..end);
        }
    }
    // Whatever lies past the filesystem's end inside the partition is not its to free.
    if limit < size {
        out.push(limit..size);
    }
    Some(out)
}

/// `[0, end)` minus the sorted, disjoint `used`.
fn complement(used: &[Range<u64>], end: u64) -> Vec<Range<u64>> {
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

/// Where a swap area's header page ends: the signature sits in the last 10 bytes of
/// the first page, whatever the page size the area was made for.
fn swap_header_len(image: &Path, offset: u64) -> u64 {
    let Ok(file) = File::open(image) else {
        return 64 * 1024;
    };
    for page in [4096u64, 8192, 16384, 65536] {
        let mut sig = [0u8; 10];
        if file.read_exact_at(&mut sig, offset + page - 10).is_ok()
            && (&sig == b"SWAPSPACE2" || &sig == b"SWAP-SPACE")
        {
            return page;
        }
    }
    64 * 1024
}

/// The byte ranges of the disk `image` (table `layout`) that no filesystem uses: the
/// free blocks of every ext2/3/4 filesystem whose bitmaps can be trusted, and all of
/// a swap area but its header page (UUID and label). Other partitions, the gaps between
/// partitions (where boot loaders live) and the tables are never listed. Sorted and
/// disjoint. A filesystem that cannot be opened, is not clean or has a journal to
/// replay counts as all used.
pub fn free_ranges(image: &Path, layout: &Layout, reporter: &dyn Reporter) -> Vec<Range<u64>> {
    let mut free = Vec::new();
    for p in layout.partitions().iter().filter(|p| !p.is_extended()) {
        let (off, size) = (p.offset(), p.size());
        let Ok(found) = probe::probe_file(image, off, size) else {
            continue;
        };
        match found.fs_type {
            t if t.is_ext() => match trusted_used_ranges(image, off, size) {
                Some(used) => {
                    let unused = complement(&used, size);
                    let bytes: u64 = unused.iter().map(|r| r.end - r.start).sum();
                    reporter.detail(&format!(
                        "partition {}: {} MiB of free {} blocks left out",
                        p.number,
                        bytes >> 20,
                        t.name()
                    ));
                    free.extend(unused.into_iter().map(|r| off + r.start..off + r.end));
                }
                None => reporter.detail(&format!(
                    "partition {}: the {} filesystem is not clean; all of it is kept",
                    p.number,
                    t.name()
                )),
            },
            FsType::Swap => {
                let header = swap_header_len(image, off);
                if header < size {
                    free.push(off + header..off + size);
                }
            }
            _ => {}
        }
    }
    free.sort_by_key(|r| r.start);
    free
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complement_covers_the_gaps() {
        assert_eq!(complement(&[], 10), vec![Range { start: 0, end: 10 }]);
        assert_eq!(
            complement(&[Range { start: 0, end: 10 }], 10),
            Vec::<Range<u64>>::new()
        );
        assert_eq!(complement(&[2..4, 6..8], 10), vec![0..2, 4..6, 8..10]);
        assert_eq!(complement(&[2..4, 6..12], 10), vec![0..2, 4..6]);
    }

    #[test]
    fn method_names_parse() {
        assert_eq!(Method::Loop.name(), "loop");
        assert_eq!(Method::Extract.name(), "extract");
    }

    #[test]
    fn last_lines_keeps_the_tail() {
        assert_eq!(last_lines("a\n\nb\n", "c\nd\n"), "b / c / d");
    }
}
