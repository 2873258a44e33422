//! Shrinking an LVM2 physical volume that is the last partition.
//!
//! In the order that keeps every step safe to stop after:
//! 1. the ext filesystem of the LV whose data ends last on the PV (swap LVs after it are
//!    passed over and kept) is checked and shrunk
//!    to its minimum plus [`HEADROOM`](super::HEADROOM), rounded up to whole extents, on
//!    a scratch copy gathered from the LV's extents and scattered back (the LV's
//!    dropped tail is zeroed); a swap LV, or any other filesystem, is kept as it is;
//! 2. the LV is reduced to the extents the filesystem fills;
//! 3. the PV's allocation is compacted: extents move down into the gaps (data copied
//!    inside the disk, holes kept), non-linear segments stay where they are;
//! 4. the PV is resized to end after its last used extent (a metadata area at its end
//!    moves along), and the metadata is written to every metadata area (seqno + 1);
//! 5. the caller ends the partition there.
//!
//! Where a step is not safe (a VG with PVs elsewhere, an LV that is not plain linear,
//! a filesystem we cannot shrink) it is skipped with a warning; what is left is still a
//! consistent VG.

use std::path::Path;

use snf_core::Reporter;
use snf_disk::lvm::{self, PvDevice, VolumeGroup};
use snf_disk::partition::{Layout, Partition, MIB};
use snf_guestfs::probe::{self, FsType};

use super::ext::resize_target;
use super::extract::{Extracted, Piece};
use super::method::{Method, Target};
use super::{ShrinkError, ShrinkOptions, ShrunkFs};

/// What became of the PV partition.
pub(super) struct PvShrunk {
    /// The new size of the partition, in bytes (the PV's new size).
    pub(super) partition_bytes: u64,
    /// The LV filesystem that was shrunk, if one was.
    pub(super) fs: Option<ShrunkFs>,
}

/// Shrink the PV on partition `p` of `disk` (see the module documentation). `Ok(None)`
/// when nothing could safely be done; the reason was reported as a warning.
pub(super) fn shrink_pv(
    disk: &Path,
    layout: &Layout,
    p: &Partition,
    opts: &ShrinkOptions<'_>,
    reporter: &dyn Reporter,
) -> Result<Option<PvShrunk>, ShrinkError> {
    let n = p.number;
    let skip = |why: String| {
        reporter.warn(&format!("Unable to shrink partition {n}: {why}"));
        Ok(None)
    };
    let devices: Vec<PvDevice> = layout
        .partitions()
        .iter()
        .filter(|q| !q.is_extended())
        .map(|q| PvDevice {
            id: q.number,
            offset: q.offset(),
            size: q.size(),
        })
        .collect();
    let scan = match lvm::scan(disk, &devices) {
        Ok(s) => s,
        Err(e) => return skip(e.to_string()),
    };
    for w in &scan.warnings {
        reporter.warn(w);
    }
    let Some(mut vg) = scan
        .vgs
        .into_iter()
        .find(|vg| vg.pvs.iter().any(|pv| pv.device == Some(n)))
    else {
        return skip("its LVM physical volume belongs to no volume group".into());
    };
    if let Some(missing) = vg.pvs.iter().find(|pv| pv.device.is_none()) {
        return skip(format!(
            "VG {} has a PV ({}) that is not on this disk",
            vg.name, missing.uuid
        ));
    }
    let pv_key = vg
        .pvs
        .iter()
        .find(|pv| pv.device == Some(n))
        .map(|pv| pv.key.clone())
        .expect("found above");

    // The last filesystem on the PV: swap LVs after it are kept as they are (the guest's
    // fstab and initramfs may name them, and the deploy side cannot re-create an LV) and
    // move down with the rest.
    let mut fs = None;
    for lv in lvs_by_end(&vg, &pv_key) {
        match shrink_lv(disk, &mut vg, &lv, n, opts, reporter)? {
            LvShrink::Swap => continue,
            LvShrink::Shrunk(done) => fs = Some(done),
            LvShrink::Kept => {}
        }
        break;
    }

    let moves = vg.compact(&pv_key);
    if !moves.is_empty() {
        let count: u64 = moves.iter().map(|m| m.count).sum();
        reporter.info(&format!(
            "Moving {} MiB of VG {} down on partition {n} ...",
            (count * vg.extent_size).div_ceil(MIB),
            vg.name
        ));
        lvm::apply_moves(disk, &vg, &moves).map_err(lvm_err(n))?;
    }
    let ss = u64::from(layout.sector_size());
    let min = vg.min_pv_size(&pv_key).expect("the PV is on the disk");
    let new_size = min.div_ceil(ss) * ss;
    if new_size < p.size() {
        vg.resize_pv(&pv_key, new_size).map_err(lvm_err(n))?;
    }
    vg.write(disk).map_err(lvm_err(n))?;
    let pv = vg.pv(&pv_key).expect("found above");
    reporter.info(&format!(
        "Partition {n}: LVM physical volume of VG {} is {} MiB",
        vg.name,
        pv.dev_size.div_ceil(MIB)
    ));
    let partition_bytes = pv.dev_size.min(p.size());
    if let Some(f) = fs.as_mut() {
        // What the partition became, as for a plain partition.
        f.partition_bytes = partition_bytes;
    }
    Ok(Some(PvShrunk {
        partition_bytes,
        fs,
    }))
}

fn lvm_err(partition: u32) -> impl Fn(lvm::LvmError) -> ShrinkError {
    move |source| ShrinkError::Lvm { partition, source }
}

/// The visible LVs with data on PV `pv_key`, the one whose data ends last first.
fn lvs_by_end(vg: &VolumeGroup, pv_key: &str) -> Vec<String> {
    let mut ends: Vec<(u64, &str)> = Vec::new();
    for l in vg.lvs.iter().filter(|l| l.visible) {
        let end = l
            .segments
            .iter()
            .filter_map(|s| match &s.kind {
                lvm::SegmentKind::Linear { pv, start_pe } if pv == pv_key => {
                    Some(start_pe.saturating_add(s.extent_count))
                }
                _ => None,
            })
            .max();
        if let Some(end) = end {
            ends.push((end, &l.name));
        }
    }
    ends.sort_by(|a, b| b.cmp(a));
    ends.into_iter().map(|(_, name)| name.to_string()).collect()
}

/// What [`shrink_lv`] did with one LV.
enum LvShrink {
    /// It holds a swap area, kept as it is; the LV before it is the last filesystem.
    Swap,
    /// Its filesystem and the LV were shrunk.
    Shrunk(ShrunkFs),
    /// Its filesystem cannot be shrunk (the reason was warned).
    Kept,
}

/// Shrink the filesystem of LV `lv` and reduce the LV to it, when it is ext and the LV
/// can be edited; otherwise say why it is kept.
fn shrink_lv(
    disk: &Path,
    vg: &mut VolumeGroup,
    lv: &str,
    n: u32,
    opts: &ShrinkOptions<'_>,
    reporter: &dyn Reporter,
) -> Result<LvShrink, ShrinkError> {
    let what = format!("LV {}/{lv}", vg.name);
    let extents = match vg.lv_extents(lv) {
        Ok(e) => e,
        Err(e) => {
            reporter.warn(&format!("Unable to shrink {what}: {e}"));
            return Ok(LvShrink::Kept);
        }
    };
    let first = extents[0];
    let found = probe::probe_file(disk, first.image_offset, first.len)
        .map(|p| p.fs_type)
        .unwrap_or(FsType::Unknown);
    if found == FsType::Swap {
        reporter.info(&format!("{what} is swap space: kept as it is"));
        return Ok(LvShrink::Swap);
    }
    // Editable (linear, used by no other LV): try it on a copy first.
    if let Err(e) = vg.clone().reduce_lv(lv, 1) {
        reporter.warn(&format!("Unable to shrink {what}: {e}"));
        return Ok(LvShrink::Kept);
    }
    if !found.is_ext() {
        let why = if found == FsType::Unknown {
            "could not detect its file system".to_string()
        } else {
            format!("don't know how to shrink {} file systems", found.name())
        };
        reporter.warn(&format!("Unable to shrink {what}: {why}"));
        return Ok(LvShrink::Kept);
    }
    reporter.info(&format!(
        "Shrinking the {} filesystem on {what} ...",
        found.name()
    ));
    let mut map = Vec::with_capacity(extents.len());
    let mut at = 0;
    for e in &extents {
        map.push(Piece {
            at,
            disk: e.image_offset,
            len: e.len,
        });
        at += e.len;
    }
    let lv_bytes = at;
    let x = Extracted::gather(disk, map, n, &what, opts.workdir, reporter)?;
    let target = Target::Extract(x);
    let r = resize_target(&target, n, lv_bytes, vg.extent_size, reporter)?;
    if let Target::Extract(x) = &target {
        x.copy_back(r.part_bytes)?;
    }
    target.close();
    let new_extents = r.part_bytes / vg.extent_size;
    vg.reduce_lv(lv, new_extents.max(1))
        .map_err(|source| ShrinkError::Lvm {
            partition: n,
            source,
        })?;
    reporter.info(&format!(
        "{what}: {} filesystem shrunk from {} MiB to {} MiB",
        found.name(),
        r.old_bytes.div_ceil(MIB),
        r.new_bytes.div_ceil(MIB)
    ));
    Ok(LvShrink::Shrunk(ShrunkFs {
        partition: n,
        fs: found.name(),
        old_bytes: r.old_bytes,
        new_bytes: r.new_bytes,
        partition_bytes: r.part_bytes,
        method: Method::Extract,
    }))
}
