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
    sector_size: u64,
    compat_ro: u64,
    root: u64,
    root_level: u8,
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
        let root_level = sb[0xc6];
        if root_level > MAX_LEVEL {
            return Err(corrupt(format!("root tree level {root_level}")));
        }
        Ok(Super {
            devid,
            sector_size: sector,
            compat_ro: le64(&sb, 0xb4),
            root: le64(&sb, 0x50),
            root_level,
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

/// One item of a tree leaf: its key and its data.
struct Item<'a> {
    objectid: u64,
    kind: u8,
    offset: u64,
    data: &'a [u8],
}

/// Visits every leaf item of the tree rooted at `root` (`level`), depth first. Nodes
/// are found through `map` (logical to device offset); each must name itself, belong
/// to this filesystem and sit one level below its parent; the walk visits at most as
/// many nodes as the device holds.
fn walk(
    vol: &dyn Volume,
    sb: &Super,
    map: &dyn Fn(u64) -> Option<u64>,
    (root, level): (u64, u8),
    tree: &str,
    visit: &mut dyn FnMut(Item<'_>) -> Result<(), FreeSpaceError>,
) -> Result<(), FreeSpaceError> {
    let node_size = sb.node_size as usize;
    let max_nodes = sb.dev_bytes / sb.node_size;
    // These trees share no nodes: a node reached twice is a loop (or a DAG that would
    // make the walk, and the stack, grow without bound).
    let mut seen = std::collections::HashSet::new();
    let mut visited = 0u64;
    let mut stack = vec![(root, level)];
    while let Some((logical, level)) = stack.pop() {
        visited += 1;
        if visited > max_nodes || !seen.insert(logical) {
            return Err(corrupt(format!("the {tree} tree loops")));
        }
        if visited.is_multiple_of(256) {
            snf_core::cancel::check().map_err(|_| corrupt("cancelled"))?;
        }
        let phys = map(logical)
            .ok_or_else(|| corrupt(format!("{tree} tree node {logical} is in no chunk")))?;
        let b = read(vol, FS, phys, node_size)?;
        if b[0x20..0x30] != sb.meta_fsid || le64(&b, 0x30) != logical || b[0x64] != level {
            return Err(corrupt(format!(
                "{tree} tree node {logical} is not a level {level} node of this filesystem"
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
                "{tree} tree node {logical} holds {n} items"
            )));
        }
        for i in 0..n {
            let at = HEADER_LEN + i * item;
            if level > 0 {
                stack.push((le64(&b, at + KEY_LEN), level - 1));
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
                        "{tree} tree leaf {logical}: item {i} outside the node"
                    ))
                })?;
            visit(Item {
                objectid: le64(&b, at),
                kind: b[at + 8],
                offset: le64(&b, at + 9),
                data,
            })?;
        }
    }
    Ok(())
}

/// Every chunk item of the chunk tree.
fn chunk_tree(vol: &dyn Volume, sb: &Super) -> Result<Vec<Chunk>, FreeSpaceError> {
    let mut out = Vec::new();
    let root = (sb.chunk_root, sb.chunk_root_level);
    walk(vol, sb, &|l| sb.map(l), root, "chunk", &mut |it| {
        if it.kind == CHUNK_ITEM {
            let (c, _) = chunk(it.offset, it.data)
                .ok_or_else(|| corrupt(format!("chunk item {} malformed", it.offset)))?;
            out.push(c);
        }
        Ok(())
    })?;
    Ok(out)
}

/// The device offset of the `len` bytes at `logical`, through any chunk (first copy).
fn map_any(chunks: &[Chunk], logical: u64, len: u64) -> Option<u64> {
    let end = logical.checked_add(len)?;
    let c = chunks
        .iter()
        .find(|c| logical >= c.logical && end <= c.logical + c.length)?;
    c.stripes.first()?.1.checked_add(logical - c.logical)
}

const ROOT_ITEM: u8 = 132;
const FREE_SPACE_TREE_OBJECTID: u64 = 10;
const FREE_SPACE_EXTENT: u8 = 199;
const FREE_SPACE_BITMAP: u8 = 200;
const COMPAT_RO_FREE_SPACE_TREE: u64 = 1;
const COMPAT_RO_FREE_SPACE_TREE_VALID: u64 = 2;

/// The logical ranges the free-space tree lists free (extents and bitmaps), or `None`
/// when the filesystem keeps no valid free-space tree (the v1 space cache is not read).
fn free_space_tree(
    vol: &dyn Volume,
    sb: &Super,
    chunks: &[Chunk],
) -> Result<Option<Vec<Range<u64>>>, FreeSpaceError> {
    let valid = COMPAT_RO_FREE_SPACE_TREE | COMPAT_RO_FREE_SPACE_TREE_VALID;
    if sb.compat_ro & valid != valid {
        return Ok(None);
    }
    let map = |l: u64| {
        let at = map_any(chunks, l, sb.node_size)?;
        (at.checked_add(sb.node_size)? <= sb.dev_bytes).then_some(at)
    };
    let mut fst_root = None;
    walk(vol, sb, &map, (sb.root, sb.root_level), "root", &mut |it| {
        if it.objectid == FREE_SPACE_TREE_OBJECTID && it.kind == ROOT_ITEM && it.data.len() > 238 {
            fst_root = Some((le64(it.data, 176), it.data[238]));
        }
        Ok(())
    })?;
    let Some((root, level)) = fst_root else {
        return Err(corrupt("the free-space tree is announced but has no root"));
    };
    if level > MAX_LEVEL {
        return Err(corrupt(format!("free-space tree root level {level}")));
    }
    let sector = sb.sector_size;
    let mut free = Vec::new();
    walk(vol, sb, &map, (root, level), "free-space", &mut |it| {
        let (start, len) = (it.objectid, it.offset);
        let end = start
            .checked_add(len)
            .ok_or_else(|| corrupt(format!("free space {start}+{len}")))?;
        match it.kind {
            FREE_SPACE_EXTENT => free.push(start..end),
            FREE_SPACE_BITMAP => {
                let bits = len / sector;
                if len % sector != 0 || (it.data.len() as u64) < bits.div_ceil(8) {
                    return Err(corrupt(format!("free-space bitmap {start}+{len}")));
                }
                let mut run: Option<u64> = None;
                for i in 0..bits {
                    let set = it.data[(i / 8) as usize] & (1 << (i % 8)) != 0;
                    match (set, run) {
                        (true, None) => run = Some(i),
                        (false, Some(r)) => {
                            free.push(start + r * sector..start + i * sector);
                            run = None;
                        }
                        _ => {}
                    }
                }
                if let Some(r) = run {
                    free.push(start + r * sector..end);
                }
            }
            _ => {}
        }
        Ok(())
    })?;
    // Not merged: a range must stay inside its block group to be mapped.
    Ok(Some(free))
}

/// The device ranges of the logical `free` ranges, every copy. A range in no chunk is
/// skipped: mkfs.btrfs leaves entries of its temporary block groups behind, which the
/// kernel ignores too; one straddling a chunk's end is an error.
fn free_on_device(
    chunks: &[Chunk],
    free: &[Range<u64>],
    dev_bytes: u64,
) -> Result<Vec<Range<u64>>, FreeSpaceError> {
    let mut out = Vec::new();
    for r in free {
        let Some(c) = chunks
            .iter()
            .find(|c| r.start < c.logical + c.length && r.end > c.logical)
        else {
            continue;
        };
        if r.start < c.logical || r.end > c.logical + c.length {
            return Err(corrupt(format!(
                "free space {}..{} straddles chunk {}",
                r.start, r.end, c.logical
            )));
        }
        for &(_, phys) in &c.stripes {
            let s = phys + (r.start - c.logical);
            let e = s + (r.end - r.start);
            if e > dev_bytes {
                return Err(corrupt(format!(
                    "free space {}..{} past the device",
                    r.start, r.end
                )));
            }
            out.push(s..e);
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
/// The superblock, every chunk, and the device ranges they cover (sorted, merged).
struct Allocation {
    sb: Super,
    chunks: Vec<Chunk>,
    used: Vec<Range<u64>>,
}

fn chunk_ranges(vol: &dyn Volume) -> Result<Allocation, FreeSpaceError> {
    let sb = Super::read(vol)?;
    let mut chunks = chunk_tree(vol, &sb)?;
    chunks.extend(sb.sys_chunks.iter().cloned());
    let mut used = Vec::new();
    for c in &chunks {
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
    Ok(Allocation {
        sb,
        chunks,
        used: merge(used),
    })
}

/// The chunk allocation of the single-device btrfs filesystem on `vol`.
pub fn usage(vol: &dyn Volume) -> Result<Usage, FreeSpaceError> {
    let Allocation { sb, used, .. } = chunk_ranges(vol)?;
    Ok(Usage {
        dev_bytes: sb.dev_bytes,
        allocated: used.iter().map(|r| r.end - r.start).sum(),
        allocated_end: used.last().map_or(0, |r| r.end),
    })
}

/// The byte ranges of the volume `vol` that its btrfs filesystem does not use, sorted
/// and disjoint: what no chunk covers, and inside the chunks what the free-space tree
/// lists free (when the filesystem keeps one).
pub fn free_ranges(vol: &dyn Volume) -> Result<Vec<Range<u64>>, FreeSpaceError> {
    let Allocation { sb, chunks, used } = chunk_ranges(vol)?;
    let mut free = complement(&used, vol.size());
    if let Some(logical) = free_space_tree(vol, &sb, &chunks)? {
        free.extend(free_on_device(&chunks, &logical, sb.dev_bytes)?);
    }
    // Never the boot area, a superblock copy or what lies past the filesystem.
    let mut keep = vec![0..RESERVED, sb.dev_bytes..vol.size()];
    keep.extend(MIRRORS.iter().map(|&m| m..m + 4096));
    let keep = merge(keep);
    let free = merge(free);
    let mut out = Vec::new();
    for r in complement(&keep, vol.size()) {
        for f in &free {
            let (s, e) = (f.start.max(r.start), f.end.min(r.end));
            if s < e {
                out.push(s..e);
            }
        }
    }
    Ok(merge(out))
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
