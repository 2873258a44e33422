//! btrfs on one device: the device ranges no chunk covers, from the superblock's system
//! chunk array and the chunk tree (what `btrfs inspect-internal dump-tree -t chunk`
//! shows). Space inside allocated chunks is kept.
//!
//! Only single-device filesystems without a log tree to replay are listed; the first
//! MiB (boot area and primary superblock) and every superblock mirror are always kept.

use std::ops::Range;

use super::{complement, le16, le32, le64, merge, read, FreeSpaceError, Volume};

const FS: &str = "btrfs";
const SUPER_OFFSET: u64 = 64 * 1024;
const MAGIC: &[u8; 8] = b"_BHRfS_M";
const CHUNK_ITEM: u8 = 228;
const HEADER_LEN: usize = 101;
const KEY_LEN: usize = 17;
const CHUNK_LEN: usize = 48;
const STRIPE_LEN: usize = 32;
const MAX_LEVEL: u8 = 7;
/// Allocation profiles; only single and DUP fit on one device.
const PROFILE_MASK: u64 = 0x7f8;
const DUP: u64 = 1 << 5;
const INCOMPAT_METADATA_UUID: u64 = 1 << 10;
/// Never listed free: the boot area, the primary superblock and the mirrors.
const RESERVED: u64 = 1 << 20;
const MIRRORS: [u64; 3] = [64 << 20, 256 << 30, 1 << 50];

fn corrupt(what: impl Into<String>) -> FreeSpaceError {
    FreeSpaceError::Corrupt {
        fs: FS,
        what: what.into(),
    }
}

/// One chunk: a logical range and where its copies sit on the device.
#[derive(Debug, Clone)]
struct Chunk {
    logical: u64,
    length: u64,
    profile: u64,
    /// (devid, physical offset) of each stripe.
    stripes: Vec<(u64, u64)>,
}

/// Parses a chunk item from `b` (at least its stripes long); `None` if it is malformed.
fn chunk(logical: u64, b: &[u8]) -> Option<(Chunk, usize)> {
    if b.len() < CHUNK_LEN {
        return None;
    }
    let length = le64(b, 0);
    let profile = le64(b, 24) & PROFILE_MASK;
    let n = usize::from(le16(b, 44));
    let len = CHUNK_LEN + n * STRIPE_LEN;
    if n == 0 || b.len() < len || length == 0 || logical.checked_add(length).is_none() {
        return None;
    }
    let stripes = (0..n)
        .map(|i| {
            let s = CHUNK_LEN + i * STRIPE_LEN;
            (le64(b, s), le64(b, s + 8))
        })
        .collect();
    Some((
        Chunk {
            logical,
            length,
            profile,
            stripes,
        },
        len,
    ))
}

struct Super {
    devid: u64,
    dev_bytes: u64,
    node_size: u64,
    chunk_root: u64,
    chunk_root_level: u8,
    meta_fsid: [u8; 16],
    sys_chunks: Vec<Chunk>,
}

impl Super {
    fn read(vol: &dyn Volume) -> Result<Super, FreeSpaceError> {
        let sb = read(vol, FS, SUPER_OFFSET, 4096)?;
        if &sb[0x40..0x48] != MAGIC || le64(&sb, 0x30) != SUPER_OFFSET {
            return Err(corrupt("no superblock"));
        }
        let untrusted = |what: String| FreeSpaceError::Untrusted { fs: FS, what };
        let devices = le64(&sb, 0x88);
        if devices != 1 {
            return Err(untrusted(format!("it spans {devices} devices")));
        }
        if le64(&sb, 0x60) != 0 {
            return Err(untrusted("a log tree is waiting to be replayed".into()));
        }
        let sector = u64::from(le32(&sb, 0x90));
        let node_size = u64::from(le32(&sb, 0x94));
        if !sector.is_power_of_two() || !(4096..=65536).contains(&sector) {
            return Err(corrupt(format!("sector size {sector}")));
        }
        if !node_size.is_power_of_two() || !(sector..=65536).contains(&node_size) {
            return Err(corrupt(format!("node size {node_size}")));
        }
        let chunk_root_level = sb[0xc7];
        if chunk_root_level > MAX_LEVEL {
            return Err(corrupt(format!("chunk root level {chunk_root_level}")));
        }
        let devid = le64(&sb, 0xc9);
        let dev_bytes = le64(&sb, 0xc9 + 8);
        if dev_bytes > vol.size() || dev_bytes < RESERVED {
            return Err(corrupt(format!(
                "device of {dev_bytes} bytes in a volume of {}",
                vol.size()
            )));
        }
        let uuid_at = if le64(&sb, 0xbc) & INCOMPAT_METADATA_UUID != 0 {
            0x23b
        } else {
            0x20
        };
        let mut meta_fsid = [0; 16];
        meta_fsid.copy_from_slice(&sb[uuid_at..uuid_at + 16]);
        let array_len = le32(&sb, 0xa0) as usize;
        if array_len > 2048 {
            return Err(corrupt(format!("system chunk array of {array_len} bytes")));
        }
        let array = &sb[0x32b..0x32b + array_len];
        let mut sys_chunks = Vec::new();
        let mut at = 0;
        while at < array.len() {
            let key = array
                .get(at..at + KEY_LEN)
                .ok_or_else(|| corrupt("system chunk array cut short"))?;
            if key[8] != CHUNK_ITEM {
                return Err(corrupt(format!(
                    "system chunk array item of type {}",
                    key[8]
                )));
            }
            let (c, len) = chunk(le64(key, 9), &array[at + KEY_LEN..])
                .ok_or_else(|| corrupt("system chunk array item malformed"))?;
            sys_chunks.push(c);
            at += KEY_LEN + len;
        }
        Ok(Super {
            devid,
            dev_bytes,
            node_size,
            chunk_root: le64(&sb, 0x58),
            chunk_root_level,
            meta_fsid,
            sys_chunks,
        })
    }

    /// The device offset of the tree node at `logical`, through the system chunks.
    fn map(&self, logical: u64) -> Option<u64> {
        let c = self.sys_chunks.iter().find(|c| {
            logical >= c.logical && logical.saturating_add(self.node_size) <= c.logical + c.length
        })?;
        let &(devid, phys) = c.stripes.first()?;
        let at = phys.checked_add(logical - c.logical)?;
        (devid == self.devid && at.checked_add(self.node_size)? <= self.dev_bytes).then_some(at)
    }
}

/// Every chunk item of the chunk tree.
fn chunk_tree(vol: &dyn Volume, sb: &Super) -> Result<Vec<Chunk>, FreeSpaceError> {
    let node_size = sb.node_size as usize;
    // A tree bigger than the device holds nodes is a loop.
    let max_nodes = sb.dev_bytes / sb.node_size;
    let mut visited = 0u64;
    let mut stack = vec![(sb.chunk_root, sb.chunk_root_level)];
    let mut out = Vec::new();
    while let Some((logical, level)) = stack.pop() {
        visited += 1;
        if visited > max_nodes {
            return Err(corrupt("the chunk tree loops"));
        }
        if visited.is_multiple_of(256) {
            snf_core::cancel::check().map_err(|_| corrupt("cancelled"))?;
        }
        let phys = sb
            .map(logical)
            .ok_or_else(|| corrupt(format!("chunk tree node {logical} is in no system chunk")))?;
        let b = read(vol, FS, phys, node_size)?;
        if b[0x20..0x30] != sb.meta_fsid || le64(&b, 0x30) != logical || b[0x64] != level {
            return Err(corrupt(format!(
                "chunk tree node {logical} is not a level {level} node of this filesystem"
            )));
        }
        let n = le32(&b, 0x60) as usize;
        let item = if level == 0 {
            KEY_LEN + 8
        } else {
            KEY_LEN + 16
        };
        if n > (node_size - HEADER_LEN) / item {
            return Err(corrupt(format!(
                "chunk tree node {logical} holds {n} items"
            )));
        }
        for i in 0..n {
            let at = HEADER_LEN + i * item;
            if level > 0 {
                stack.push((le64(&b, at + KEY_LEN), level - 1));
                continue;
            }
            if b[at + 8] != CHUNK_ITEM {
                continue;
            }
            let (off, size) = (
                le32(&b, at + KEY_LEN) as usize,
                le32(&b, at + KEY_LEN + 4) as usize,
            );
            let data = HEADER_LEN
                .checked_add(off)
                .and_then(|s| Some(s..s.checked_add(size)?))
                .and_then(|r| b.get(r))
                .ok_or_else(|| {
                    corrupt(format!(
                        "chunk tree leaf {logical}: item {i} outside the node"
                    ))
                })?;
            let (c, _) = chunk(le64(&b, at + 9), data).ok_or_else(|| {
                corrupt(format!(
                    "chunk tree leaf {logical}: chunk item {i} malformed"
                ))
            })?;
            out.push(c);
        }
    }
    Ok(out)
}

/// How much of its device a single-device btrfs filesystem has given to chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// The device size the filesystem uses (its superblock's device item).
    pub dev_bytes: u64,
    /// Bytes of the device inside chunks (every copy of a DUP chunk counted).
    pub allocated: u64,
    /// Where the last chunk on the device ends.
    pub allocated_end: u64,
}

/// The device ranges every chunk covers, sorted and merged, and the superblock.
fn chunk_ranges(vol: &dyn Volume) -> Result<(Super, Vec<Range<u64>>), FreeSpaceError> {
    let sb = Super::read(vol)?;
    let chunks = chunk_tree(vol, &sb)?;
    let mut used = Vec::new();
    for c in chunks.iter().chain(&sb.sys_chunks) {
        if c.profile != 0 && c.profile != DUP {
            return Err(FreeSpaceError::Untrusted {
                fs: FS,
                what: format!("chunk {} has a multi-device profile", c.logical),
            });
        }
        for &(devid, phys) in &c.stripes {
            let end = phys.checked_add(c.length).filter(|&e| e <= sb.dev_bytes);
            match end {
                Some(end) if devid == sb.devid => used.push(phys..end),
                _ => {
                    return Err(corrupt(format!(
                        "chunk {} lies outside the device (devid {devid}, offset {phys})",
                        c.logical
                    )))
                }
            }
        }
    }
    Ok((sb, merge(used)))
}

/// The chunk allocation of the single-device btrfs filesystem on `vol`.
pub fn usage(vol: &dyn Volume) -> Result<Usage, FreeSpaceError> {
    let (sb, used) = chunk_ranges(vol)?;
    Ok(Usage {
        dev_bytes: sb.dev_bytes,
        allocated: used.iter().map(|r| r.end - r.start).sum(),
        allocated_end: used.last().map_or(0, |r| r.end),
    })
}

/// The byte ranges of the volume `vol` that no chunk of its btrfs filesystem covers,
/// sorted and disjoint.
pub fn free_ranges(vol: &dyn Volume) -> Result<Vec<Range<u64>>, FreeSpaceError> {
    let (sb, mut used) = chunk_ranges(vol)?;
    used.extend([0..RESERVED, sb.dev_bytes..vol.size()]);
    used.extend(MIRRORS.iter().map(|&m| m..m + 4096));
    Ok(complement(&merge(used), vol.size()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut v = vec![0u8; 2 << 20];
        assert!(free_ranges(&v.as_slice()).is_err());
        let sb = SUPER_OFFSET as usize;
        v[sb + 0x40..sb + 0x48].copy_from_slice(MAGIC);
        v[sb + 0x30..sb + 0x38].copy_from_slice(&SUPER_OFFSET.to_le_bytes());
        v[sb + 0x88] = 1;
        assert!(free_ranges(&v.as_slice()).is_err());
    }
}
