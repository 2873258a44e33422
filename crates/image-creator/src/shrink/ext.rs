//! Checking and resizing one ext filesystem with e2fsprogs, on a loop device or an
//! extracted copy.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use snf_core::cancel;
use snf_core::command;
use snf_core::Reporter;
use snf_disk::partition::{Layout, Partition, MIB};
use snf_guestfs::probe::FsType;
use snf_guestfs::ExtFs;

use super::extract::Extracted;
use super::method::{self, LoopDevice, Method, Target};
use super::{disk_name, hide_dev, ShrinkError, ShrinkOptions, ShrunkFs, HEADROOM};

/// At most this many `resize2fs -P` / `resize2fs` rounds.
const ESTIMATE_ROUNDS: usize = 3;

/// Shrinks the ext filesystem on partition `p` and returns its new size, which is a
/// whole number of sectors: the partition must end exactly there.
pub(super) fn shrink_ext(
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
    let no_sync_available = command::exists(NO_SYNC_WRAPPER);
    let method = method::choose(opts.method, disk, p, private_copy, no_sync_available);
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
        // Appliance is never chosen for ext (only btrfs is resized there).
        Method::Extract | Method::Appliance => {
            Target::Extract(Extracted::new(disk, p, opts.workdir, reporter)?)
        }
    };
    let method = match target {
        Target::Loop(_) => Method::Loop,
        Target::Extract(_) => Method::Extract,
    };
    let r = resize_target(&target, p.number, p.size(), ss, reporter)?;
    if let Target::Extract(x) = &target {
        x.copy_back(r.part_bytes)?;
    }
    target.close();
    reporter.info(&format!(
        "Partition {}: {} filesystem shrunk from {} MiB to {} MiB",
        p.number,
        kind.name(),
        r.old_bytes.div_ceil(MIB),
        r.new_bytes.div_ceil(MIB)
    ));
    Ok(ShrunkFs {
        partition: p.number,
        fs: kind.name(),
        old_bytes: r.old_bytes,
        new_bytes: r.new_bytes,
        partition_bytes: r.part_bytes,
        method,
    })
}

/// What [`resize_target`] did, in bytes.
pub(super) struct Resized {
    pub(super) old_bytes: u64,
    pub(super) new_bytes: u64,
    /// The filesystem's new container size: a whole number of `granule`s.
    pub(super) part_bytes: u64,
}

/// Check the ext filesystem in `target` (of partition `n`, or on it for an LV, in a
/// container of `size` bytes) and shrink it to its minimum plus [`HEADROOM`], rounded
/// up to a whole number of `granule` bytes (a sector, an LVM extent) that it fills.
pub(super) fn resize_target(
    target: &Target,
    n: u32,
    size: u64,
    granule: u64,
    reporter: &dyn Reporter,
) -> Result<Resized, ShrinkError> {
    let method = match target {
        Target::Loop(_) => Method::Loop,
        Target::Extract(_) => Method::Extract,
    };
    let dev = target.path().to_path_buf();
    // The extracted file is scratch: nothing in it needs to reach the platter.
    let tools = E2fsTools {
        no_sync: matches!(target, Target::Extract(_)) && command::exists(NO_SYNC_WRAPPER),
        limit: command::data_limit(size),
    };
    let through = match target {
        Target::Loop(_) => dev.display().to_string(),
        Target::Extract(x) => x.file_name().to_string(),
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

    let superblock = || {
        ExtFs::open(&dev, 0, false)
            .map(|fs| fs.info())
            .map_err(|source| ShrinkError::Ext {
                partition: n,
                dev: dev.clone(),
                source,
            })
    };
    tools.fsck(&dev, n, reporter)?;
    let info = superblock()?;
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
    // The container ends on a granule boundary; the filesystem fills it exactly.
    let part_bytes = (wanted * bs).div_ceil(granule) * granule;
    let part_bytes = part_bytes.min(size);
    let fill = part_bytes / bs;
    if fill != wanted {
        tools.resize2fs(&dev, n, fill)?;
    }
    let after = superblock()?;
    if !after.is_clean() || after.has_errors() {
        return Err(ShrinkError::NotClean { partition: n });
    }
    Ok(Resized {
        old_bytes: old_blocks * bs,
        new_bytes: after.blocks_count * bs,
        part_bytes,
    })
}

/// The wrapper that runs a program with its syncs turned off (Debian's `eatmydata`).
pub const NO_SYNC_WRAPPER: &str = "eatmydata";

/// e2fsprogs' programs, run on a scratch file without syncs when `no_sync`.
struct E2fsTools {
    no_sync: bool,
    /// Their time limit: they read the whole filesystem at most a few times, so only
    /// one that loops on a corrupt filesystem reaches it.
    limit: Duration,
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
        let out = command::run_unchecked_with_limit(
            self.command("e2fsck").arg("-fy").arg(dev),
            self.limit,
        )
        .map_err(|source| ShrinkError::Tool {
            partition,
            dev: dev.to_path_buf(),
            source,
        })?;
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
        let out = command::run_with_limit(self.command("resize2fs").arg("-P").arg(dev), self.limit)
            .map_err(|source| ShrinkError::Tool {
                partition,
                dev: dev.to_path_buf(),
                source,
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
        command::run_with_limit(
            self.command("resize2fs").arg(dev).arg(blocks.to_string()),
            self.limit,
        )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_lines_keeps_the_tail() {
        assert_eq!(last_lines("a\n\nb\n", "c\nd\n"), "b / c / d");
    }
}
