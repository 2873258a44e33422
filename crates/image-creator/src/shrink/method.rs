//! How resize2fs reaches the filesystem: a loop device over the partition or an
//! extracted copy, and which one a run uses.

pub(super) use snf_disk::loopdev::LoopDevice;
use snf_disk::partition::Partition;
use snf_guestfs::ExtFs;
use std::path::Path;

use super::extract::Extracted;
use super::{ShrinkError, METHOD_ENV};

/// How resize2fs gets to the filesystem without the `?offset=` form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// A loop device over the partition (needs root and loop devices).
    Loop,
    /// A copy of the partition's used blocks in the work directory (no privileges).
    Extract,
    /// Resized in place by the filesystem's own kernel driver in the libguestfs
    /// appliance (btrfs); never chosen for ext.
    Appliance,
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
            Method::Appliance => "appliance",
        }
    }
}

/// The method for the filesystem on `p`: the one asked for, else the default (see the
/// module documentation).
pub(super) fn choose(
    asked: Option<Method>,
    disk: &Path,
    p: &Partition,
    private_copy: bool,
    no_sync_available: bool,
) -> Method {
    match asked {
        Some(m) => m,
        None if !loop_devices_usable() => Method::Extract,
        None if private_copy && no_sync_available && fits_in_page_cache(used_bytes(disk, p)) => {
            Method::Extract
        }
        None => Method::Loop,
    }
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

pub(super) enum Target {
    Loop(LoopDevice),
    Extract(Extracted),
}

impl Target {
    pub(super) fn path(&self) -> &Path {
        match self {
            Target::Loop(l) => l.path(),
            Target::Extract(x) => x.path(),
        }
    }

    /// Detach or remove now (the guards would do it anyway).
    pub(super) fn close(self) {
        drop(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_names_parse() {
        assert_eq!(Method::Loop.name(), "loop");
        assert_eq!(Method::Extract.name(), "extract");
    }
}
