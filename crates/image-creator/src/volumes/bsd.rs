//! The slices of BSD disklabels as volumes.
//!
//! An MBR partition of a BSD type whose label reads is replaced by its slices (a
//! filesystem in slice `a` usually starts where the partition does, so the partition
//! itself would be probed as that filesystem a second time). A label that cannot be
//! read leaves the partition in the list, unusable, with the reason.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use snf_core::bytes;
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
            Ok(label) => replace_parent(descs, &label),
            // Assembly warns about an unusable volume, naming it.
            Err(e) => {
                if let Some(d) = descs.iter_mut().find(|d| d.number == e.parent()) {
                    d.unusable = Some(e.reason());
                }
            }
        }
    }
}

fn replace_parent(descs: &mut Vec<PartitionDesc>, label: &Disklabel) {
    let Some(at) = descs
        .iter()
        .position(|d| d.lv.is_none() && d.bsd.is_none() && d.number == label.parent)
    else {
        return;
    };
    let parent = descs.remove(at);
    let slices = label.slices.iter().map(|s| PartitionDesc {
        number: s.number,
        offset: s.start * 512,
        size: s.sectors * 512,
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

/// FreeBSD's `glabel(8)` metadata: magic, version, name, the provider's size in bytes.
const GEOM_LABEL_MAGIC: &[u8; 16] = b"GEOM::LABEL\0\0\0\0\0";

/// Name each volume whose last sector holds a GEOM label made for exactly its size
/// (a label of the whole disk, in the last partition's last sector, has the disk's).
pub(super) fn add_geom_labels(image: &Path, sector_size: u32, descs: &mut [PartitionDesc]) {
    let Ok(file) = File::open(image) else {
        return;
    };
    let ss = u64::from(sector_size);
    for d in descs
        .iter_mut()
        .filter(|d| d.lv.is_none() && d.unusable.is_none() && d.size >= 2 * ss)
    {
        let mut md = [0u8; 44];
        if file.read_exact_at(&mut md, d.offset + d.size - ss).is_err()
            || &md[..16] != GEOM_LABEL_MAGIC
        {
            continue;
        }
        if bytes::le64(&md, 36) != d.size {
            continue;
        }
        let name = &md[20..36];
        let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
        if !name.is_empty() {
            d.geom_label = Some(String::from_utf8_lossy(name).into_owned());
        }
    }
}
