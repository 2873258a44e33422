//! The bytes of a disk no filesystem uses, which the copy and the dump write as holes.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;

use snf_core::report::Quiet;
use snf_core::Reporter;
use snf_disk::partition::Layout;
use snf_guestfs::probe::{self, FsType};
use snf_guestfs::{ExtFs, UfsFs};

use crate::volumes;

/// The byte ranges (relative to `offset`, within `size`) that the ext or NTFS
/// filesystem at `offset` of `image` uses, when its bitmaps can be trusted: it opens,
/// it is marked clean, has no recorded errors and no journal to replay (NTFS: not
/// dirty, not hibernated). `None` otherwise.
pub(super) fn trusted_used_ranges(image: &Path, offset: u64, size: u64) -> Option<Vec<Range<u64>>> {
    let Ok(mut fs) = ExtFs::open(image, offset, false) else {
        return ntfs_used_ranges(image, offset, size);
    };
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

/// The byte ranges (relative to `offset`) of the whole blocks the UFS filesystem at
/// `offset` of `image` has free in its cylinder-group maps, when it opens and is clean.
fn ufs_free_ranges(image: &Path, offset: u64, size: u64) -> Option<Vec<Range<u64>>> {
    let mut fs = UfsFs::open(image, offset, size, false).ok()?;
    if !fs.is_clean() {
        return None;
    }
    fs.free_ranges().ok()
}

/// [`trusted_used_ranges`] for NTFS: the clusters its $Bitmap marks as used, and
/// everything past the last cluster (the backup boot sector).
fn ntfs_used_ranges(image: &Path, offset: u64, size: u64) -> Option<Vec<Range<u64>>> {
    let vol = ntfs3g::Volume::open(image, offset, size, false).ok()?;
    vol.check_shut_down().ok()?;
    let info = vol.info().ok()?;
    let bitmap = vol.cluster_bitmap().ok()?;
    let cs = info.cluster_size;
    let limit = info.clusters.saturating_mul(cs).min(size);
    let mut out: Vec<Range<u64>> = Vec::new();
    let mut run: Option<u64> = None;
    for c in 0..=info.clusters {
        let used = c < info.clusters && bitmap[(c / 8) as usize] & (1 << (c % 8)) != 0;
        match (used, run) {
            (true, None) => run = Some(c),
            (false, Some(first)) => {
                out.push((first * cs).min(limit)..(c * cs).min(limit));
                run = None;
            }
            _ => {}
        }
    }
    out.retain(|r| r.start < r.end);
    if limit < size {
        out.push(limit..size);
    }
    Some(out)
}

pub(super) use snf_guestfs::freespace::complement;

/// The free space of the xfs or btrfs filesystem at `offset` of `image`, read in-process
/// from its own allocation structures (relative to `offset`).
fn appliance_fs_free(
    image: &Path,
    offset: u64,
    size: u64,
    kind: FsType,
) -> Result<Vec<Range<u64>>, snf_guestfs::freespace::FreeSpaceError> {
    use snf_guestfs::freespace::{self, FileVolume, FreeSpaceError};
    let vol = FileVolume::open(image, offset, size).map_err(|source| FreeSpaceError::Read {
        fs: kind.name(),
        offset,
        len: 0,
        source,
    })?;
    if kind == FsType::Xfs {
        freespace::xfs::free_ranges(&vol)
    } else {
        freespace::btrfs::free_ranges(&vol)
    }
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
/// free blocks of every ext2/3/4 and UFS filesystem whose bitmaps can be trusted, the free
/// extents of xfs filesystems with a clean log, the space outside every chunk of
/// single-device btrfs filesystems, the free clusters of every NTFS volume Windows shut
/// down fully, all of a swap area but its header page (UUID and label), on partitions and
/// on LVM logical volumes
/// alike, and the extents of every physical volume that no logical volume holds (what a
/// removed LV left there). Other partitions, the gaps between partitions (where boot
/// loaders live), the tables and the LVM metadata are never listed. Sorted and
/// disjoint. A filesystem that cannot be opened, is not clean or has a journal to
/// replay counts as all used.
pub fn free_ranges(image: &Path, layout: &Layout, reporter: &dyn Reporter) -> Vec<Range<u64>> {
    // Problems with the LVM metadata were reported by inspection already.
    let volumes = volumes::list(image, layout, &Quiet);
    let mut free = Vec::new();
    // A volume in pieces (a split logical volume) is kept whole: its filesystem can only
    // be read gathered.
    // An LV another one uses (a snapshot's origin) may hold blocks free for itself but
    // not for that other one: it is kept whole too.
    let used_by_another = |v: &snf_guestfs::assemble::PartitionDesc| {
        v.lv.as_ref().is_some_and(|lv| {
            volumes
                .vgs
                .iter()
                .find(|g| g.name == lv.vg)
                .is_some_and(|g| !g.users(&lv.name).is_empty())
        })
    };
    for v in volumes
        .descs
        .iter()
        .filter(|v| v.unusable.is_none() && v.pieces.is_empty() && !used_by_another(v))
    {
        let (off, size) = (v.offset, v.size);
        let Ok(found) = probe::probe_file(image, off, size) else {
            continue;
        };
        // A filesystem's own free space (relative to the volume), or why all of it is kept.
        let unused: Option<Result<Vec<Range<u64>>, String>> = match found.fs_type {
            t if t.is_ext() || t == FsType::Ntfs => Some(
                trusted_used_ranges(image, off, size)
                    .map(|used| complement(&used, size))
                    .ok_or_else(|| format!("the {} filesystem is not clean", t.name())),
            ),
            FsType::Ufs1 | FsType::Ufs2 => Some(
                ufs_free_ranges(image, off, size)
                    .ok_or_else(|| "the UFS filesystem is not clean".to_string()),
            ),
            FsType::Xfs | FsType::Btrfs => {
                Some(appliance_fs_free(image, off, size, found.fs_type).map_err(|e| e.to_string()))
            }
            _ => None,
        };
        match unused {
            Some(Ok(unused)) => {
                let bytes: u64 = unused.iter().map(|r| r.end - r.start).sum();
                reporter.detail(&format!(
                    "{}: {} MiB of free {} space left out",
                    v.name(),
                    bytes >> 20,
                    found.fs_type.name()
                ));
                free.extend(unused.into_iter().map(|r| off + r.start..off + r.end));
            }
            Some(Err(why)) => reporter.detail(&format!("{}: {why}; all of it is kept", v.name())),
            None if found.fs_type == FsType::Swap => {
                let header = swap_header_len(image, off);
                if header < size {
                    free.push(off + header..off + size);
                }
            }
            None => {}
        }
    }
    for vg in &volumes.vgs {
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
    }
    free.sort_by_key(|r| r.start);
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
