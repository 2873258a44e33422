//! xfs: the free extents of every allocation group, from its AGF and the by-block-number
//! free-space btree (v4 and v5/CRC blocks), what `xfs_db freesp` counts.
//!
//! The btrees on the disk are only the truth when the log holds nothing to replay: a
//! log whose newest record is not an unmount record may carry allocations the btrees do
//! not show yet, so such a filesystem (or one with an external log we cannot see) is
//! [`FreeSpaceError::Untrusted`].

use std::ops::Range;

use super::{be16, be32, be64, merge, read, FreeSpaceError, Volume};

const FS: &str = "xfs";
const SB_MAGIC: u32 = 0x5846_5342; // "XFSB"
const AGF_MAGIC: u32 = 0x5841_4746; // "XAGF"
const ABTB_MAGIC: u32 = 0x4142_5442; // "ABTB", v4 by-block-number btree block
const ABTB_CRC_MAGIC: u32 = 0x4142_3342; // "AB3B", the same with a v5 header
const AGFL_MAGIC: u32 = 0x5841_464C; // "XAFL"
const LOG_MAGIC: u32 = 0xFEED_BABE;
const NULL_AGBLOCK: u32 = u32::MAX;
/// Deeper trees than this do not fit in 2^32 blocks.
const MAX_LEVELS: u32 = 9;
/// xfs logs are at most 2 GiB.
const MAX_LOG_BYTES: u64 = 2 << 30;
const BB: u64 = 512;

fn corrupt(what: impl Into<String>) -> FreeSpaceError {
    FreeSpaceError::Corrupt {
        fs: FS,
        what: what.into(),
    }
}

/// What the free-space walk needs from the superblock, checked.
struct Geometry {
    block_size: u64,
    sect_size: u64,
    ag_blocks: u64,
    ag_count: u64,
    blocks: u64,
    ag_blk_log: u32,
    crc: bool,
    log_start: u64,
    log_blocks: u64,
}

impl Geometry {
    fn read(vol: &dyn Volume) -> Result<Geometry, FreeSpaceError> {
        let sb = read(vol, FS, 0, 512)?;
        if be32(&sb, 0) != SB_MAGIC {
            return Err(corrupt("no superblock"));
        }
        let block_size = u64::from(be32(&sb, 4));
        let blocks = be64(&sb, 8);
        let log_start = be64(&sb, 48);
        let ag_blocks = u64::from(be32(&sb, 84));
        let ag_count = u64::from(be32(&sb, 88));
        let log_blocks = u64::from(be32(&sb, 96));
        let version = be16(&sb, 100) & 0xf;
        let sect_size = u64::from(be16(&sb, 102));
        let ag_blk_log = u32::from(sb[124]);
        if !block_size.is_power_of_two() || !(512..=65536).contains(&block_size) {
            return Err(corrupt(format!("block size {block_size}")));
        }
        if !sect_size.is_power_of_two()
            || !(512..=32768).contains(&sect_size)
            || sect_size > block_size
        {
            return Err(corrupt(format!("sector size {sect_size}")));
        }
        if !(4..=5).contains(&version) {
            return Err(corrupt(format!("version {version}")));
        }
        // AG block numbers are ag_blk_log bits wide inside a filesystem block number.
        if ag_blocks < 8
            || ag_blk_log > 31
            || ag_blocks > 1 << ag_blk_log
            || ag_blocks <= 1 << ag_blk_log >> 1
        {
            return Err(corrupt(format!("{ag_blocks} blocks per allocation group")));
        }
        let whole = (ag_count.max(1) - 1).saturating_mul(ag_blocks);
        if ag_count == 0 || blocks <= whole || blocks > whole + ag_blocks {
            return Err(corrupt(format!(
                "{blocks} blocks in {ag_count} allocation groups of {ag_blocks}"
            )));
        }
        if blocks.saturating_mul(block_size) > vol.size() {
            return Err(corrupt(format!(
                "{blocks} blocks of {block_size} bytes do not fit in the volume"
            )));
        }
        Ok(Geometry {
            block_size,
            sect_size,
            ag_blocks,
            ag_count,
            blocks,
            ag_blk_log,
            crc: version == 5,
            log_start,
            log_blocks,
        })
    }

    /// The byte offset of a filesystem block number (AG number in the high bits).
    fn fsb_to_byte(&self, fsb: u64) -> Option<u64> {
        let ag = fsb >> self.ag_blk_log;
        let agbno = fsb & ((1 << self.ag_blk_log) - 1);
        if ag >= self.ag_count || agbno >= self.ag_blocks {
            return None;
        }
        let block = ag * self.ag_blocks + agbno;
        (block < self.blocks).then_some(block * self.block_size)
    }
}

/// The byte ranges of the volume `vol` that its xfs filesystem has free, sorted and
/// disjoint, after checking that the log is clean.
pub fn free_ranges(vol: &dyn Volume) -> Result<Vec<Range<u64>>, FreeSpaceError> {
    let geo = Geometry::read(vol)?;
    check_log_clean(vol, &geo)?;
    let mut free = Vec::new();
    for ag in 0..geo.ag_count {
        snf_core::cancel::check().map_err(|_| corrupt("cancelled"))?;
        ag_free(vol, &geo, ag, &mut free)?;
    }
    Ok(merge(free))
}

/// Appends the free extents of allocation group `ag`, as bytes of the volume.
fn ag_free(
    vol: &dyn Volume,
    geo: &Geometry,
    ag: u64,
    out: &mut Vec<Range<u64>>,
) -> Result<(), FreeSpaceError> {
    let ag_start = ag * geo.ag_blocks;
    let length = (geo.blocks - ag_start).min(geo.ag_blocks);
    let agf = read(vol, FS, ag_start * geo.block_size + geo.sect_size, 512)?;
    if be32(&agf, 0) != AGF_MAGIC || u64::from(be32(&agf, 8)) != ag {
        return Err(corrupt(format!("allocation group {ag}: no AGF")));
    }
    if u64::from(be32(&agf, 12)) != length {
        return Err(corrupt(format!(
            "allocation group {ag}: AGF length {}",
            be32(&agf, 12)
        )));
    }
    let root = be32(&agf, 16);
    let levels = be32(&agf, 28);
    let free_blocks = u64::from(be32(&agf, 52));
    if u64::from(root) >= length || !(1..=MAX_LEVELS).contains(&levels) {
        return Err(corrupt(format!(
            "allocation group {ag}: free-space btree root {root} of {levels} levels"
        )));
    }
    let walk = BtreeWalk {
        vol,
        geo,
        ag,
        ag_start,
        length,
    };
    // Down the leftmost path to the first leaf, then along the leaves.
    let mut block = root;
    for level in (1..levels).rev() {
        let b = walk.block(block, level)?;
        let nrecs = be16(&b, 6) as usize;
        if nrecs == 0 || nrecs > walk.node_max() {
            return Err(corrupt(format!(
                "allocation group {ag}: btree node {block} holds {nrecs} keys"
            )));
        }
        block = be32(&b, walk.header() + walk.node_max() * 8);
        if u64::from(block) >= length {
            return Err(corrupt(format!(
                "allocation group {ag}: btree pointer {block}"
            )));
        }
    }
    let (mut next_free, mut counted, mut visited) = (0u64, 0u64, 0u64);
    loop {
        visited += 1;
        if visited > length {
            return Err(corrupt(format!(
                "allocation group {ag}: free-space btree leaves loop"
            )));
        }
        let b = walk.block(block, 0)?;
        let nrecs = be16(&b, 6) as usize;
        // Only a root leaf may be empty: records in every other leaf keep the order
        // check below, which ends any sibling loop, working.
        if nrecs > walk.leaf_max() || (nrecs == 0 && (visited > 1 || levels > 1)) {
            return Err(corrupt(format!(
                "allocation group {ag}: btree leaf {block} holds {nrecs} records"
            )));
        }
        for i in 0..nrecs {
            let at = walk.header() + i * 8;
            let start = u64::from(be32(&b, at));
            let count = u64::from(be32(&b, at + 4));
            // Sorted, disjoint and inside the group: this also ends any sibling loop.
            if count == 0 || start < next_free || start + count > length {
                return Err(corrupt(format!(
                    "allocation group {ag}: free extent {start}+{count} out of order or place"
                )));
            }
            next_free = start + count;
            counted += count;
            out.push((ag_start + start) * geo.block_size..(ag_start + next_free) * geo.block_size);
        }
        let right = be32(&b, 12);
        if right == NULL_AGBLOCK {
            break;
        }
        if u64::from(right) >= length {
            return Err(corrupt(format!(
                "allocation group {ag}: btree sibling {right}"
            )));
        }
        block = right;
        if visited.is_multiple_of(1024) {
            snf_core::cancel::check().map_err(|_| corrupt("cancelled"))?;
        }
    }
    // The AGF counts the btree's free blocks; the free list's are free too (reserved for
    // btree growth, initialised when taken), as `xfs_db freesp` counts them.
    if counted != free_blocks {
        return Err(corrupt(format!(
            "allocation group {ag}: the btree holds {counted} free blocks, the AGF says {free_blocks}"
        )));
    }
    free_list(vol, geo, ag, &agf, length, out)
}

/// Appends the blocks on the AG free list of `ag` (AGF `agf`).
fn free_list(
    vol: &dyn Volume,
    geo: &Geometry,
    ag: u64,
    agf: &[u8],
    length: u64,
    out: &mut Vec<Range<u64>>,
) -> Result<(), FreeSpaceError> {
    let ag_start = ag * geo.ag_blocks;
    let (first, count) = (u64::from(be32(agf, 40)), u64::from(be32(agf, 48)));
    if count == 0 {
        return Ok(());
    }
    let agfl = read(
        vol,
        FS,
        ag_start * geo.block_size + 3 * geo.sect_size,
        geo.sect_size as usize,
    )?;
    let header = if geo.crc {
        if be32(&agfl, 0) != AGFL_MAGIC || u64::from(be32(&agfl, 4)) != ag {
            return Err(corrupt(format!("allocation group {ag}: no AGFL")));
        }
        36
    } else {
        0
    };
    let slots = (geo.sect_size - header as u64) / 4;
    if first >= slots || count > slots {
        return Err(corrupt(format!(
            "allocation group {ag}: free list {first}+{count} of {slots}"
        )));
    }
    for i in 0..count {
        let slot = ((first + i) % slots) as usize;
        let bno = u64::from(be32(&agfl, header + slot * 4));
        if bno >= length {
            return Err(corrupt(format!(
                "allocation group {ag}: free list block {bno}"
            )));
        }
        out.push((ag_start + bno) * geo.block_size..(ag_start + bno + 1) * geo.block_size);
    }
    Ok(())
}

struct BtreeWalk<'a> {
    vol: &'a dyn Volume,
    geo: &'a Geometry,
    ag: u64,
    ag_start: u64,
    length: u64,
}

impl BtreeWalk<'_> {
    fn header(&self) -> usize {
        if self.geo.crc {
            56
        } else {
            16
        }
    }
    fn leaf_max(&self) -> usize {
        (self.geo.block_size as usize - self.header()) / 8
    }
    fn node_max(&self) -> usize {
        (self.geo.block_size as usize - self.header()) / 12
    }

    /// Reads AG block `agbno`, a btree block of the given level.
    fn block(&self, agbno: u32, level: u32) -> Result<Vec<u8>, FreeSpaceError> {
        debug_assert!(u64::from(agbno) < self.length);
        let byte = (self.ag_start + u64::from(agbno)) * self.geo.block_size;
        let b = read(self.vol, FS, byte, self.geo.block_size as usize)?;
        let magic = if self.geo.crc {
            ABTB_CRC_MAGIC
        } else {
            ABTB_MAGIC
        };
        let ok = be32(&b, 0) == magic
            && u32::from(be16(&b, 4)) == level
            && (!self.geo.crc || (be64(&b, 16) == byte / BB && u64::from(be32(&b, 48)) == self.ag));
        if !ok {
            return Err(corrupt(format!(
                "allocation group {}: block {agbno} is not a level {level} free-space btree block",
                self.ag
            )));
        }
        Ok(b)
    }
}

/// Succeeds when the newest record of the internal log is an unmount record.
fn check_log_clean(vol: &dyn Volume, geo: &Geometry) -> Result<(), FreeSpaceError> {
    let untrusted = |what: &str| FreeSpaceError::Untrusted {
        fs: FS,
        what: what.to_string(),
    };
    if geo.log_start == 0 {
        return Err(untrusted("the log is on another device"));
    }
    let start = geo
        .fsb_to_byte(geo.log_start)
        .ok_or_else(|| corrupt(format!("log start block {}", geo.log_start)))?;
    let len = geo.log_blocks.saturating_mul(geo.block_size);
    if len == 0 || len > MAX_LOG_BYTES || start + len > geo.blocks * geo.block_size {
        return Err(corrupt(format!("log of {} blocks", geo.log_blocks)));
    }
    let log_bbs = len / BB;
    // The newest record header: the one with the highest (cycle, block) that names its
    // own place.
    let mut head: Option<(u64, u64)> = None;
    let chunk = 1u64 << 20;
    let mut pos = 0;
    while pos < len {
        snf_core::cancel::check().map_err(|_| corrupt("cancelled"))?;
        let n = chunk.min(len - pos);
        let buf = read(vol, FS, start + pos, n as usize)?;
        for (i, bb) in buf.chunks_exact(BB as usize).enumerate() {
            if be32(bb, 0) != LOG_MAGIC {
                continue;
            }
            let block = pos / BB + i as u64;
            let lsn = be64(bb, 16);
            let cycle = u64::from(be32(bb, 4));
            if lsn >> 32 == cycle && lsn & 0xffff_ffff == block && head.is_none_or(|h| lsn > h.0) {
                head = Some((lsn, block));
            }
        }
        pos += n;
    }
    let Some((_, block)) = head else {
        return Err(untrusted("the log holds no record"));
    };
    let hdr = read(vol, FS, start + block * BB, BB as usize)?;
    if be32(&hdr, 40) != 1 {
        return Err(untrusted("the log is not clean (a transaction to replay)"));
    }
    // Version 2 logs with records above 32 KiB carry extra header blocks.
    let h_size = u64::from(be32(&hdr, 320));
    let header_bbs = if be32(&hdr, 8) & 2 != 0 && h_size > 32768 {
        h_size.div_ceil(32768)
    } else {
        1
    };
    let data = (block + header_bbs) % log_bbs;
    let op = read(vol, FS, start + data * BB, BB as usize)?;
    const XFS_LOG_CLIENT: u8 = 0xaa;
    const UNMOUNT_TRANS: u8 = 0x20;
    if op[8] != XFS_LOG_CLIENT || op[9] & UNMOUNT_TRANS == 0 {
        return Err(untrusted("the log is not clean (not unmounted)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut v = vec![0u8; 64 * 1024];
        assert!(free_ranges(&v.as_slice()).is_err());
        v[..4].copy_from_slice(b"XFSB");
        v[4..8].copy_from_slice(&4096u32.to_be_bytes());
        v[8..16].copy_from_slice(&u64::MAX.to_be_bytes());
        assert!(free_ranges(&v.as_slice()).is_err());
    }
}
