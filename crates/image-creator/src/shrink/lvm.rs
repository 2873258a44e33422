//! Shrinking a last partition that is an LVM2 physical volume: the filesystem of the
//! logical volume that ends last on it, then that volume, then the group's allocation on
//! the physical volume (extents moved down by copying data inside the disk and editing
//! the metadata), then the physical volume. The partition is cut after it by the caller.
//!
//! Nothing of device-mapper is needed: the metadata is read and written by
//! [`snf_disk::lvm`], and the filesystem is resized on its byte range like a partition's.
//! Only linear segments move; the extents of other kinds (striped, mirrored, thin pool
//! metadata ...) stay where they are and the others are packed around them. Where a
//! step cannot be done safely (a volume group with physical volumes elsewhere, a volume
//! in several pieces) it is skipped with a reason, and the steps after it still run
//! where they are safe.

use std::path::Path;

use snf_core::cancel;
use snf_core::Reporter;
use snf_disk::lvm::{self, PvDevice, SegmentKind, VolumeGroup};
use snf_disk::partition::{Layout, Partition};
use snf_guestfs::probe::{self, FsType};

use super::region::Region;
use super::{ext, io_err, ShrinkError, ShrinkOptions, ShrunkFs};

/// What [`shrink_pv`] did.
pub(super) struct PvShrunk {
    /// The physical volume's new size in bytes, a whole number of sectors: the partition
    /// must end exactly there.
    pub pv_bytes: u64,
    /// The filesystem shrunk, if one was.
    pub fs: Option<ShrunkFs>,
    /// Why the physical volume or its last filesystem could not be shrunk.
    pub not_shrunk: Option<String>,
}

/// Shrink the physical volume on partition `last` of the disk `disk` (table `layout`).
/// `Ok(None)` when the volume group cannot be changed at all (the reason was warned).
pub(super) fn shrink_pv(
    disk: &Path,
    layout: &Layout,
    last: &Partition,
    opts: &ShrinkOptions<'_>,
    reporter: &dyn Reporter,
) -> Result<Option<PvShrunk>, ShrinkError> {
    let devices: Vec<PvDevice> = layout
        .partitions()
        .iter()
        .filter(|p| !p.is_extended())
        .map(|p| PvDevice {
            id: p.number,
            offset: p.offset(),
            size: p.size(),
        })
        .collect();
    let scan = lvm::scan(disk, &devices)?;
    let skip = |why: String| {
        reporter.warn(&why);
        Ok(None)
    };
    let Some(mut vg) = scan
        .vgs
        .into_iter()
        .find(|vg| vg.pvs.iter().any(|pv| pv.device == Some(last.number)))
    else {
        return skip(format!(
            "Unable to shrink partition {}: its LVM physical volume belongs to no volume group",
            last.number
        ));
    };
    if let Some(pv) = vg.pvs.iter().find(|pv| pv.device.is_none()) {
        return skip(format!(
            "Unable to shrink partition {}: volume group {} has the physical volume {} on \
             another disk",
            last.number, vg.name, pv.uuid
        ));
    }
    let pv_key = vg
        .pvs
        .iter()
        .find(|pv| pv.device == Some(last.number))
        .map(|pv| pv.key.clone())
        .expect("the group was chosen for this PV");

    let mut fs = None;
    let mut not_shrunk = None;
    // The last filesystem on the PV: swap areas after it are kept as they are (the
    // guest's fstab and initramfs may name them, and the deploy side cannot re-create a
    // logical volume), and move down with the rest.
    for lv in lvs_by_end(&vg, &pv_key) {
        match shrink_lv(disk, &mut vg, &lv, last.number, opts, reporter)? {
            LvShrink::Swap => continue,
            LvShrink::Done(done) => fs = Some(done),
            LvShrink::Not(why) => {
                reporter.warn(&why);
                not_shrunk = Some(why);
            }
        }
        break;
    }

    cancel::check()?;
    let moves = vg.compact(&pv_key);
    if !moves.is_empty() {
        let extents: u64 = moves.iter().map(|m| m.count).sum();
        reporter.info(&format!(
            "Moving {extents} extent(s) of volume group {} to the start of partition {}",
            vg.name, last.number
        ));
        lvm::apply_moves(disk, &vg, &moves)?;
    }
    let pv = vg
        .pvs
        .iter()
        .find(|pv| pv.key == pv_key)
        .expect("the PV is the group's");
    let ss = u64::from(layout.sector_size());
    let needed = vg.min_pv_size(&pv_key).div_ceil(ss) * ss;
    let pv_bytes = if needed < pv.dev_size.min(last.size()) {
        let old = pv.dev_size;
        vg.resize_pv(&pv_key, needed)?;
        reporter.info(&format!(
            "Partition {}: LVM physical volume shrunk from {} MiB to {} MiB",
            last.number,
            old.div_ceil(super::MIB),
            needed.div_ceil(super::MIB)
        ));
        needed
    } else {
        last.size()
    };
    vg.write(disk)?;
    Ok(Some(PvShrunk {
        pv_bytes,
        fs,
        not_shrunk,
    }))
}

/// The logical volumes with extents on physical volume `pv_key`, the one reaching
/// furthest into it first.
fn lvs_by_end(vg: &VolumeGroup, pv_key: &str) -> Vec<String> {
    let mut ends: Vec<(u64, String)> = vg
        .lvs
        .iter()
        .filter_map(|lv| {
            let end = lv
                .segments
                .iter()
                .filter_map(|s| match &s.kind {
                    SegmentKind::Linear { pv, start_pe } if pv == pv_key => {
                        Some(start_pe.saturating_add(s.extent_count))
                    }
                    _ => None,
                })
                .max()?;
            Some((end, lv.name.clone()))
        })
        .collect();
    ends.sort_by(|a, b| b.cmp(a));
    ends.into_iter().map(|(_, name)| name).collect()
}

/// What [`shrink_lv`] did with one logical volume.
enum LvShrink {
    /// It holds a swap area, kept as it is.
    Swap,
    /// Its filesystem and the volume were shrunk.
    Done(ShrunkFs),
    /// Its filesystem cannot be shrunk, for this reason.
    Not(String),
}

/// Shrink the filesystem of `lv` and the volume with it.
fn shrink_lv(
    disk: &Path,
    vg: &mut VolumeGroup,
    lv: &str,
    number: u32,
    opts: &ShrinkOptions<'_>,
    reporter: &dyn Reporter,
) -> Result<LvShrink, ShrinkError> {
    let name = format!("LV {}/{lv}", vg.name);
    let extents = vg.lv_extents(lv)?;
    let [one] = extents.as_slice() else {
        return Ok(LvShrink::Not(format!(
            "Unable to shrink {name}: its data is in {} separate pieces on the disk",
            extents.len()
        )));
    };
    let region = Region {
        name: name.clone(),
        offset: one.image_offset,
        size: one.len,
    };
    let found = probe::probe_file(disk, region.offset, region.size)
        .map_err(io_err(format!("read {name}")))?
        .fs_type;
    match found {
        t if t.is_ext() => {}
        FsType::Swap => {
            reporter.info(&format!(
                "Keeping the swap area on {name} as it is ({} MiB)",
                region.size.div_ceil(super::MIB)
            ));
            return Ok(LvShrink::Swap);
        }
        FsType::Unknown => {
            return Ok(LvShrink::Not(format!(
                "Unable to shrink {name}: could not detect its file system"
            )))
        }
        t => {
            return Ok(LvShrink::Not(format!(
                "Unable to shrink {name}: don't know how to shrink {} file systems",
                t.name()
            )))
        }
    }
    let fs = ext::shrink_ext(disk, &region, number, vg.extent_size, found, opts, reporter)?;
    let count = fs.partition_bytes / vg.extent_size;
    let old = vg.lv(lv).map_or(0, |l| l.extent_count);
    if count < old {
        vg.reduce_lv(lv, count)?;
        reporter.info(&format!(
            "{name}: reduced from {old} to {count} extents of {} MiB",
            vg.extent_size >> 20
        ));
    }
    Ok(LvShrink::Done(fs))
}
