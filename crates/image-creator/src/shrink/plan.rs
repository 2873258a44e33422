//! Which partitions go before anything is resized: trailing swap areas (recorded for
//! the deploy side) and extended partitions left empty.

use std::path::Path;

use snf_core::cancel;
use snf_core::Reporter;
use snf_disk::partition::disklabel::Flavour;
use snf_disk::partition::{Layout, Partition, PartitionError, PartitionKind, MIB};
use snf_guestfs::probe::{self, FsType};

use super::{io_err, Removed, ShrinkError};

/// What [`drop_trailing`] left and removed.
pub(super) struct Trailing {
    pub removed: Vec<Removed>,
    /// The `SWAP` property, when a swap partition was removed.
    pub swap: Option<String>,
    /// The last partition left and what it holds.
    pub last: Option<(Partition, FsType)>,
}

/// Removes trailing swap partitions and emptied extended partitions from `next`.
pub(super) fn drop_trailing(
    disk: &Path,
    name: &str,
    next: &mut Layout,
    reporter: &dyn Reporter,
) -> Result<Trailing, ShrinkError> {
    let table_err = |source| ShrinkError::Table {
        disk: name.to_string(),
        source,
    };
    let mut removed = Vec::new();
    let mut swap = None;
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
        let found = probe_partition(disk, name, &last)?;
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
    trim_extended(next).map_err(table_err)?;
    Ok(Trailing {
        removed,
        swap,
        last,
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
    // A BSD partition is divided by its disklabel: the filesystem found at its start is
    // only its first slice, and cutting the partition there would cut the others off.
    if p.kind == PartitionKind::Primary && Flavour::from_mbr_type(p.mbr_type).is_some() {
        return Ok(FsType::BsdLabel);
    }
    probe::probe_file(disk, p.offset(), p.size())
        .map(|found| found.fs_type)
        .map_err(io_err(format!("read partition {} of {name}", p.number)))
}
