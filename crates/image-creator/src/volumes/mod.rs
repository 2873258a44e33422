//! The volumes of a disk: its data partitions, and the logical volumes of the LVM2
//! volume groups on them. Inspection, system preparation, free-space listing and
//! shrinking see a logical volume as a block range, exactly like a partition. The
//! slices of a BSD disklabel (NetBSD, OpenBSD) are volumes the same way.

mod bsd;
mod gathered;

use std::path::Path;

use snf_core::Reporter;
use snf_disk::lvm::{self, PvDevice, VolumeGroup};
use snf_disk::partition::Layout;
use snf_guestfs::assemble::{LvDesc, PartitionDesc};
use snf_guestfs::probe::{probe_file, FsType};

use crate::inspect::partitions_from_layout;

pub use gathered::GatheringOpener;

/// What [`list`] found.
#[derive(Debug, Clone, Default)]
pub struct Volumes {
    /// The data partitions, then the logical volumes (in volume-group order).
    pub descs: Vec<PartitionDesc>,
    /// The volume groups found on the partitions.
    pub vgs: Vec<VolumeGroup>,
}

impl Volumes {
    /// The volume group holding the logical volume `vg/lv`.
    pub fn vg_of(&self, full_name: &str) -> Option<&VolumeGroup> {
        let (vg, _) = full_name.split_once('/')?;
        self.vgs.iter().find(|g| g.name == vg)
    }
}

/// The volumes of the disk image `image` whose partition table is `layout`.
///
/// A partition holding an LVM2 physical volume stays in the list (probing names it
/// `LVM2_member`) and each logical volume of its group is added; one whose extents are
/// not contiguous lists its pieces (see [`GatheringOpener`]). A logical volume that
/// cannot be read (an unsupported type, a missing PV) is listed as unusable with the
/// reason, so that a guest whose root is on it is refused with that reason. Metadata that cannot be read at all is a
/// warning, and the PV partition is marked unusable with it.
pub fn list(image: &Path, layout: &Layout, reporter: &dyn Reporter) -> Volumes {
    let mut descs = partitions_from_layout(layout);
    bsd::add_slices(image, layout, &mut descs, reporter);
    bsd::add_geom_labels(image, layout.sector_size(), &mut descs);
    let pvs: Vec<PvDevice> = descs
        .iter()
        .filter(|d| probe_file(image, d.offset, d.size).is_ok_and(|p| p.fs_type == FsType::LvmPv))
        .map(|d| PvDevice {
            id: d.number,
            offset: d.offset,
            size: d.size,
        })
        .collect();
    if pvs.is_empty() {
        return Volumes {
            descs,
            vgs: Vec::new(),
        };
    }
    let scan = match lvm::scan(image, &pvs) {
        Ok(scan) => scan,
        Err(e) => {
            reporter.warn(&e.to_string());
            for d in descs.iter_mut() {
                if pvs.iter().any(|pv| pv.id == d.number) {
                    d.unusable = Some(e.to_string());
                }
            }
            return Volumes {
                descs,
                vgs: Vec::new(),
            };
        }
    };
    for w in &scan.warnings {
        reporter.warn(w);
    }
    // A PV that no volume group claims (a damaged label, no readable metadata) is named
    // with the reason, should nothing else be found.
    for d in descs.iter_mut() {
        if !pvs.iter().any(|pv| pv.id == d.number)
            || scan
                .vgs
                .iter()
                .any(|vg| vg.pvs.iter().any(|pv| pv.device == Some(d.number)))
        {
            continue;
        }
        let own = format!("{}: ", lvm::device_name(d.number));
        let why = scan
            .warnings
            .iter()
            .find_map(|w| w.strip_prefix(&own))
            .unwrap_or("no volume group metadata could be read from it");
        d.unusable = Some(format!("an LVM physical volume: {why}"));
    }
    for vg in &scan.vgs {
        for lv in vg.lvs.iter().filter(|lv| lv.visible) {
            descs.push(lv_desc(vg, &lv.name));
        }
    }
    Volumes {
        descs,
        vgs: scan.vgs,
    }
}

fn lv_desc(vg: &VolumeGroup, lv_name: &str) -> PartitionDesc {
    let lv = vg.lv(lv_name).expect("the LV is one of the group's");
    let desc = LvDesc {
        vg: vg.name.clone(),
        name: lv.name.clone(),
        mapper_name: vg.mapper_name(&lv.name),
        dm_uuid: format!(
            "LVM-{}{}",
            vg.uuid.replace('-', ""),
            lv.uuid.replace('-', "")
        ),
    };
    let mut out = PartitionDesc {
        lv: Some(desc),
        ..Default::default()
    };
    match vg.lv_extents(lv_name) {
        Ok(extents) => match extents.as_slice() {
            [one] => {
                out.number = one.device;
                out.offset = one.image_offset;
                out.size = one.len;
            }
            [first, ..] => {
                out.number = first.device;
                out.offset = first.image_offset;
                out.size = extents.iter().map(|e| e.len).sum();
                out.pieces = extents
                    .iter()
                    .map(|e| e.image_offset..e.image_offset + e.len)
                    .collect();
            }
            [] => out.unusable = Some("it has no extents".into()),
        },
        Err(e) => {
            // The error names the LV, as the volume's own name will.
            let text = e.to_string();
            let own = format!("LV {}/{}: ", vg.name, lv.name);
            out.unusable = Some(text.strip_prefix(&own).unwrap_or(&text).to_string());
        }
    }
    out
}
