//! The bytes of a disk no filesystem uses, which the copy and the dump write as holes.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;

use snf_core::Reporter;
use snf_disk::lvm;
use snf_disk::partition::Layout;
use snf_guestfs::probe::{self, FsType};
use snf_guestfs::ExtFs;

/// The byte ranges (relative to `offset`, within `size`) that the ext filesystem at
/// `offset` of `image` uses, when its bitmaps can be trusted: it opens, it is marked
/// clean, has no recorded errors and no journal to replay. `None` otherwise.
pub(super) fn trusted_used_ranges(image: &Path, offset: u64, size: u64) -> Option<Vec<Range<u64>>> {
    let mut fs = ExtFs::open(image, offset, false).ok()?;
    let info = fs.info();
    if !info.is_clean() || info.has_errors() || info.needs_recovery() {
        return None;
    }
    let bs = u64::from(info.block_size);
    let limit = info.blocks_count.saturating_mul(bs).min(size);
    let used = fs.used_block_ranges().ok()?;
    let mut out: Vec<Range<u64>> = Vec::with_capacity(used.len());
    for (first, count) in used {
        let start = first.saturating_mul(bs).min(limit);
        let end = first.saturating_add(count).saturating_mul(bs).min(limit);
        if start < end {
            out.push(start..end);
        }
    }
    // Whatever lies past the filesystem's end inside the partition is not its to free.
    if limit < size {
        out.push(limit..size);
    }
    Some(out)
}

/// `[0, end)` minus the sorted, disjoint `used`.
pub(super) fn complement(used: &[Range<u64>], end: u64) -> Vec<Range<u64>> {
    let mut out = Vec::new();
    let mut pos = 0;
    for r in used {
        if r.start > pos {
            out.push(pos..r.start.min(end));
        }
        pos = pos.max(r.end);
        if pos >= end {
            break;
        }
    }
    if pos < end {
        out.push(pos..end);
    }
    out.retain(|r| r.start < r.end);
    out
}

/// Where a swap area's header page ends: the signature sits in the last 10 bytes of
/// the first page, whatever the page size the area was made for.
fn swap_header_len(image: &Path, offset: u64) -> u64 {
    let Ok(file) = File::open(image) else {
        return 64 * 1024;
    };
    for page in [4096u64, 8192, 16384, 65536] {
        let mut sig = [0u8; 10];
        if file.read_exact_at(&mut sig, offset + page - 10).is_ok()
            && (&sig == b"SWAPSPACE2" || &sig == b"SWAP-SPACE")
        {
            return page;
        }
    }
    64 * 1024
}

/// The byte ranges of the disk `image` (table `layout`) that no filesystem uses: the
/// free blocks of every ext2/3/4 filesystem whose bitmaps can be trusted, and all of
/// a swap area but its header page (UUID and label). Other partitions, the gaps between
/// partitions (where boot loaders live) and the tables are never listed. Sorted and
/// disjoint. A filesystem that cannot be opened, is not clean or has a journal to
/// replay counts as all used. Inside LVM2 volume groups, the same for each LV, and the
/// VG's free extents.
pub fn free_ranges(image: &Path, layout: &Layout, reporter: &dyn Reporter) -> Vec<Range<u64>> {
    let mut free = Vec::new();
    let mut lvm_pvs = false;
    for p in layout.partitions().iter().filter(|p| !p.is_extended()) {
        let (off, size) = (p.offset(), p.size());
        let Ok(found) = probe::probe_file(image, off, size) else {
            continue;
        };
        match found.fs_type {
            t if t.is_ext() => match trusted_used_ranges(image, off, size) {
                Some(used) => {
                    let unused = complement(&used, size);
                    let bytes: u64 = unused.iter().map(|r| r.end - r.start).sum();
                    reporter.detail(&format!(
                        "partition {}: {} MiB of free {} blocks left out",
                        p.number,
                        bytes >> 20,
                        t.name()
                    ));
                    free.extend(unused.into_iter().map(|r| off + r.start..off + r.end));
                }
                None => reporter.detail(&format!(
                    "partition {}: the {} filesystem is not clean; all of it is kept",
                    p.number,
                    t.name()
                )),
            },
            FsType::Swap => {
                let header = swap_header_len(image, off);
                if header < size {
                    free.push(off + header..off + size);
                }
            }
            FsType::LvmPv => lvm_pvs = true,
            _ => {}
        }
    }
    if lvm_pvs {
        free.extend(lvm_free_ranges(image, layout, reporter));
    }
    free.sort_by_key(|r| r.start);
    free
}

/// The free bytes inside the LVM2 volume groups of the disk: the free extents of each
/// VG, the free blocks of ext filesystems in LVs that lie in one piece (libext2fs reads
/// a filesystem at one offset), all of a swap LV but its header page. A VG that cannot
/// be read counts as all used.
fn lvm_free_ranges(image: &Path, layout: &Layout, reporter: &dyn Reporter) -> Vec<Range<u64>> {
    let devices: Vec<lvm::PvDevice> = layout
        .partitions()
        .iter()
        .filter(|p| !p.is_extended())
        .map(|p| lvm::PvDevice {
            id: p.number,
            offset: p.offset(),
            size: p.size(),
        })
        .collect();
    let Ok(scan) = lvm::scan(image, &devices) else {
        return Vec::new();
    };
    let mut free = Vec::new();
    for vg in &scan.vgs {
        let unallocated = vg.free_ranges();
        let bytes: u64 = unallocated.iter().map(|r| r.end - r.start).sum();
        if bytes > 0 {
            reporter.detail(&format!(
                "VG {}: {} MiB of free extents left out",
                vg.name,
                bytes >> 20
            ));
        }
        free.extend(unallocated);
        // An LV another one uses (a snapshot's origin) may hold blocks free for itself
        // but not for that other one.
        for lv in vg
            .lvs
            .iter()
            .filter(|l| l.visible && vg.users(&l.name).is_empty())
        {
            let Ok(pieces) = vg.lv_extents(&lv.name) else {
                continue;
            };
            let [piece] = pieces[..] else { continue };
            let (off, size) = (piece.image_offset, piece.len);
            let Ok(found) = probe::probe_file(image, off, size) else {
                continue;
            };
            match found.fs_type {
                t if t.is_ext() => {
                    if let Some(used) = trusted_used_ranges(image, off, size) {
                        let unused = complement(&used, size);
                        let bytes: u64 = unused.iter().map(|r| r.end - r.start).sum();
                        reporter.detail(&format!(
                            "LV {}/{}: {} MiB of free {} blocks left out",
                            vg.name,
                            lv.name,
                            bytes >> 20,
                            t.name()
                        ));
                        free.extend(unused.into_iter().map(|r| off + r.start..off + r.end));
                    }
                }
                FsType::Swap => {
                    let header = swap_header_len(image, off);
                    if header < size {
                        free.push(off + header..off + size);
                    }
                }
                _ => {}
            }
        }
    }
    free
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complement_covers_the_gaps() {
        assert_eq!(complement(&[], 10), vec![Range { start: 0, end: 10 }]);
        assert_eq!(
            complement(&[Range { start: 0, end: 10 }], 10),
            Vec::<Range<u64>>::new()
        );
        assert_eq!(complement(&[2..4, 6..8], 10), vec![0..2, 4..6, 8..10]);
        assert_eq!(complement(&[2..4, 6..12], 10), vec![0..2, 4..6]);
    }
}
