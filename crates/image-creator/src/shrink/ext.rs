//! Checking and resizing one ext filesystem with e2fsprogs, on a loop device or an
//! extracted copy.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use snf_core::cancel;
use snf_core::command;
use snf_core::Reporter;
use snf_disk::partition::MIB;
use snf_guestfs::probe::FsType;
use snf_guestfs::ExtFs;

use super::extract::Extracted;
use super::method::{self, LoopDevice, Method, Target};
use super::region::Region;
use super::{disk_name, hide_dev, ShrinkError, ShrinkOptions, ShrunkFs, HEADROOM};

/// At most this many `resize2fs -P` / `resize2fs` rounds.
const ESTIMATE_ROUNDS: usize = 3;

/// Shrinks the ext filesystem in `p` (on partition `number`, or on a logical volume of
/// it) and returns its new size, which is a whole number of `align` bytes (the sector
/// size, or the LVM extent size): the partition or volume must end exactly there.
pub(super) fn shrink_ext(
    disk: &Path,
    p: &Region,
    number: u32,
    align: u64,
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
        "Shrinking the {} filesystem on {} ...",
        kind.name(),
        p.name
    ));
    let target = match method {
        Method::Loop => match LoopDevice::attach(disk, p.offset, p.size) {
            Ok(dev) => Target::Loop(dev),
            Err(source) if opts.method.is_none() => {
                reporter.detail(&format!(
                    "no loop device ({source}); working on an extracted copy instead"
                ));
                Target::Extract(Extracted::new(disk, p, opts.workdir, reporter)?)
            }
            Err(source) => {
                return Err(ShrinkError::Loop {
                    volume: p.name.clone(),
                    disk: disk_name(disk, opts.workdir),
                    source: Box::new(source),
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
    let n = p.name.as_str();
    // The extracted file is scratch: nothing in it needs to reach the platter.
    let tools = E2fsTools {
        no_sync: matches!(target, Target::Extract(_)) && no_sync_available,
        limit: command::data_limit(p.size),
    };
    let through = match &target {
        Target::Loop(_) => dev.display().to_string(),
        Target::Extract(x) => x.file_name().to_string(),
    };
    reporter.detail(&format!(
        "{n}: resizing through {through} ({}{})",
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
                volume: n.to_string(),
                dev: dev.clone(),
                source: Box::new(source),
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
    // The partition ends on a sector boundary (a logical volume on an extent boundary);
    // the filesystem fills it exactly.
    let part_bytes = (wanted * bs).div_ceil(align) * align;
    let part_bytes = part_bytes.min(p.size);
    let fill = part_bytes / bs;
    if fill != wanted {
        tools.resize2fs(&dev, n, fill)?;
    }
    let after = superblock()?;
    if !after.is_clean() || after.has_errors() {
        return Err(ShrinkError::NotClean {
            volume: n.to_string(),
        });
    }
    if let Target::Extract(x) = &target {
        x.copy_back(part_bytes)?;
    }
    target.close();
    let new_bytes = after.blocks_count * bs;
    reporter.info(&format!(
        "{}: {} filesystem shrunk from {} MiB to {} MiB",
        upper_first(n),
        kind.name(),
        (old_blocks * bs).div_ceil(MIB),
        new_bytes.div_ceil(MIB)
    ));
    Ok(ShrunkFs {
        partition: number,
        volume: n.to_string(),
        fs: kind.name(),
        old_bytes: old_blocks * bs,
        new_bytes,
        partition_bytes: part_bytes,
        method,
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
    fn fsck(&self, dev: &Path, volume: &str, reporter: &dyn Reporter) -> Result<(), ShrinkError> {
        let out = command::run_unchecked_with_limit(
            self.command("e2fsck").arg("-fy").arg(dev),
            self.limit,
        )
        .map_err(|source| ShrinkError::Tool {
            volume: volume.to_string(),
            dev: dev.to_path_buf(),
            source: Box::new(source),
        })?;
        match out.status.code() {
            Some(0) => Ok(()),
            Some(1) => {
                reporter.detail(&format!(
                    "{volume}: e2fsck corrected errors in the filesystem"
                ));
                Ok(())
            }
            code => Err(ShrinkError::Fsck {
                volume: volume.to_string(),
                code: code.unwrap_or(-1),
                detail: hide_dev(&last_lines(&out.stdout, &out.stderr), dev, volume),
            }),
        }
    }

    /// `resize2fs -P`: the estimated minimum size, in filesystem blocks.
    fn min_blocks(&self, dev: &Path, volume: &str) -> Result<u64, ShrinkError> {
        let out = command::run_with_limit(self.command("resize2fs").arg("-P").arg(dev), self.limit)
            .map_err(|source| ShrinkError::Tool {
                volume: volume.to_string(),
                dev: dev.to_path_buf(),
                source: Box::new(source),
            })?;
        out.stdout
            .lines()
            .find_map(|l| {
                l.strip_prefix("Estimated minimum size of the filesystem:")
                    .and_then(|v| v.trim().parse::<u64>().ok())
            })
            .ok_or_else(|| ShrinkError::Estimate {
                volume: volume.to_string(),
                output: hide_dev(&last_lines(&out.stdout, &out.stderr), dev, volume),
            })
    }

    /// `resize2fs DEV BLOCKS` (a size without unit is in filesystem blocks).
    fn resize2fs(&self, dev: &Path, volume: &str, blocks: u64) -> Result<(), ShrinkError> {
        command::run_with_limit(
            self.command("resize2fs").arg(dev).arg(blocks.to_string()),
            self.limit,
        )
        .map(|_| ())
        .map_err(|source| ShrinkError::Tool {
            volume: volume.to_string(),
            dev: dev.to_path_buf(),
            source: Box::new(source),
        })
    }
}

/// `partition 2` → `Partition 2`, for a message that starts with the name.
fn upper_first(name: &str) -> String {
    let mut c = name.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
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
