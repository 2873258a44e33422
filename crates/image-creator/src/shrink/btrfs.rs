//! Shrinking a single-device btrfs filesystem (beyond the original, which left btrfs
//! alone): the kernel's own resize, in the libguestfs appliance, moves the chunks past
//! the new end down; the partition then ends where the filesystem does.
//!
//! The target is the space the chunks hold plus headroom, never below the kernel's
//! 256 MiB floor; a resize that runs out of room (ENOSPC: the chunks did not fit
//! below the new end) is retried halfway to the current size, a bounded number of
//! times. A filesystem on several devices is not shrunk (the run says why).

use std::path::Path;

use snf_core::Reporter;
use snf_disk::partition::{Layout, Partition, MIB};
use snf_guestfs::appliance::ApplianceFs;
use snf_guestfs::freespace::{self, FileVolume, FreeSpaceError};
use snf_guestfs::{Filesystem, FsKind};

use super::{io_err, Method, ShrinkError, ShrunkFs, HEADROOM};

/// The kernel refuses to resize a btrfs device below this.
const KERNEL_MIN: u64 = 256 * MIB;
/// Resize attempts before giving up (each moves chunks, which is slow under TCG).
const ATTEMPTS: usize = 4;
/// Not worth an appliance launch: less than this would be saved.
const MIN_GAIN: u64 = 16 * MIB;

/// What became of a btrfs shrink that did not fail.
pub(super) enum Outcome {
    Shrunk(ShrunkFs),
    /// Why the filesystem was left as it was (a warning for the run).
    Kept(String),
}

fn usage(disk: &Path, p: &Partition) -> Result<freespace::btrfs::Usage, FreeSpaceError> {
    let vol =
        FileVolume::open(disk, p.offset(), p.size()).map_err(|source| FreeSpaceError::Read {
            fs: "btrfs",
            offset: p.offset(),
            len: 0,
            source,
        })?;
    freespace::btrfs::usage(&vol)
}

/// The first size to ask for: the chunks, the boot area, headroom and a tenth for the
/// metadata the move itself needs, in whole MiB.
fn first_target(u: &freespace::btrfs::Usage) -> u64 {
    let want = u.allocated + MIB + HEADROOM + u.allocated / 10;
    want.div_ceil(MIB).saturating_mul(MIB).max(KERNEL_MIN)
}

/// Shrinks the btrfs filesystem on partition `p` of `disk` (table `layout`).
pub(super) fn shrink_btrfs(
    disk: &Path,
    layout: &Layout,
    p: &Partition,
    reporter: &dyn Reporter,
) -> Result<Outcome, ShrinkError> {
    let kept = |why: String| {
        Ok(Outcome::Kept(format!(
            "Unable to shrink partition {}: {why}",
            p.number
        )))
    };
    let before = match usage(disk, p) {
        Ok(u) => u,
        Err(FreeSpaceError::Untrusted { what, .. }) => {
            return kept(format!("its btrfs filesystem cannot be shrunk: {what}"))
        }
        Err(e) => return kept(e.to_string()),
    };
    let mut target = first_target(&before);
    if target.saturating_add(MIN_GAIN) > before.dev_bytes {
        reporter.detail(&format!(
            "partition {}: the btrfs filesystem is already near its minimum size",
            p.number
        ));
        return kept("the btrfs filesystem is already near its minimum size".into());
    }
    reporter.info(&format!(
        "Shrinking the btrfs filesystem on partition {} (in the appliance) ...",
        p.number
    ));
    let mut fs = ApplianceFs::open(disk, p.offset(), p.size(), FsKind::Btrfs, "", true)
        .map_err(|e| guest_err(p, e))?;
    let mut done = false;
    for _ in 0..ATTEMPTS {
        match fs.btrfs_resize(target) {
            Ok(()) => {
                done = true;
                break;
            }
            Err(snf_guestfs::Error::NoSpace(_)) => {
                reporter.detail(&format!(
                    "partition {}: {} MiB is too small for the btrfs chunks; trying larger",
                    p.number,
                    target / MIB
                ));
                target = (target + (before.dev_bytes - target) / 2).div_ceil(MIB) * MIB;
                if target.saturating_add(MIN_GAIN) > before.dev_bytes {
                    break;
                }
            }
            Err(e) => {
                drop(fs);
                return Err(guest_err(p, e));
            }
        }
    }
    Box::new(fs).close().map_err(|e| guest_err(p, e))?;
    if !done {
        return kept("its btrfs chunks could not be moved into a smaller size".into());
    }
    let after = usage(disk, p).map_err(|e| ShrinkError::Io {
        what: format!(
            "read the resized btrfs filesystem of partition {}",
            p.number
        ),
        source: std::io::Error::other(e.to_string()),
    })?;
    let ss = u64::from(layout.sector_size());
    if !after.dev_bytes.is_multiple_of(ss) || after.dev_bytes > before.dev_bytes {
        return Err(io_err(format!("resize partition {}", p.number))(
            std::io::Error::other(format!(
                "the btrfs device size {} is not a whole number of sectors",
                after.dev_bytes
            )),
        ));
    }
    reporter.info(&format!(
        "Partition {}: btrfs filesystem shrunk from {} MiB to {} MiB",
        p.number,
        before.dev_bytes.div_ceil(MIB),
        after.dev_bytes.div_ceil(MIB)
    ));
    Ok(Outcome::Shrunk(ShrunkFs {
        partition: p.number,
        fs: "btrfs",
        old_bytes: before.dev_bytes,
        new_bytes: after.dev_bytes,
        partition_bytes: after.dev_bytes,
        method: Method::Appliance,
    }))
}

fn guest_err(p: &Partition, source: snf_guestfs::Error) -> ShrinkError {
    ShrinkError::Appliance {
        partition: p.number,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_target_has_headroom_and_respects_the_kernel_floor() {
        let u = |allocated| freespace::btrfs::Usage {
            dev_bytes: 10 << 30,
            allocated,
            allocated_end: allocated,
        };
        assert_eq!(first_target(&u(10 * MIB)), KERNEL_MIN);
        let t = first_target(&u(1 << 30));
        assert!(t >= (1 << 30) + HEADROOM && t.is_multiple_of(MIB) && t < 2 << 30);
    }
}
