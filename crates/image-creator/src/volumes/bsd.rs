//! The slices of BSD disklabels as volumes.
//!
//! An MBR partition of a BSD type whose label reads is replaced by its slices (a
//! filesystem in slice `a` usually starts where the partition does, so the partition
//! itself would be probed as that filesystem a second time). A label that cannot be
//! read leaves the partition in the list, unusable, with the reason.

use std::fs::File;
use std::path::Path;

use snf_core::Reporter;
use snf_disk::partition::disklabel::{self, Disklabel};
use snf_disk::partition::{Layout, TableKind};
use snf_guestfs::assemble::{BsdSliceDesc, PartitionDesc};

/// Replace in `descs` every BSD partition of `layout` whose disklabel reads by its
/// slices, numbered as Linux numbers them.
pub(super) fn add_slices(
    image: &Path,
    layout: &Layout,
    descs: &mut Vec<PartitionDesc>,
    reporter: &dyn Reporter,
) {
    if layout.kind() != TableKind::Msdos
        || !layout
            .partitions()
            .iter()
            .any(|p| disklabel::Flavour::from_mbr_type(p.mbr_type).is_some())
    {
        return;
    }
    let labels = match File::open(image) {
        Ok(mut f) => disklabel::read_labels(&mut f, layout),
        Err(e) => {
            reporter.warn(&format!("cannot read the BSD disklabels: {e}"));
            return;
        }
    };
    for label in labels {
        match label {
            Ok(label) => replace_parent(descs, &label, layout.sector_size()),
            Err(e) => {
                reporter.warn(&e.to_string());
                let parent = match &e {
                    disklabel::DisklabelError::Io { parent, .. }
                    | disklabel::DisklabelError::Missing { parent, .. }
                    | disklabel::DisklabelError::Invalid { parent, .. } => *parent,
                };
                if let Some(d) = descs.iter_mut().find(|d| d.number == parent) {
                    d.unusable = Some(e.to_string());
                }
            }
        }
    }
}

fn replace_parent(descs: &mut Vec<PartitionDesc>, label: &Disklabel, sector_size: u32) {
    let Some(at) = descs
        .iter()
        .position(|d| d.lv.is_none() && d.bsd.is_none() && d.number == label.parent)
    else {
        return;
    };
    let parent = descs.remove(at);
    let ss = u64::from(sector_size);
    let slices = label.slices.iter().map(|s| PartitionDesc {
        number: s.number,
        offset: s.start * ss,
        size: s.sectors * ss,
        mbr_signature: parent.mbr_signature,
        bsd: Some(BsdSliceDesc {
            parent: label.parent,
            letter: s.letter,
            duid: label.duid.clone(),
        }),
        ..Default::default()
    });
    // Slices go where their partition was, so that the disk order of volumes holds.
    let tail = descs.split_off(at);
    descs.extend(slices);
    descs.extend(tail);
}
