//! The UFS superblock: geometry, summary totals and state, parsed and checked so that
//! every later address computation stays inside the filesystem.

use super::ckhash::{self, CK_SUPERBLK};
use snf_core::bytes::{le32, le64, put_le32, put_le64};

/// UFS1 ("44bsd") magic, superblock at 8 KiB.
pub const UFS1_MAGIC: u32 = 0x0001_1954;
/// UFS2 magic, superblock at 64 KiB.
pub const UFS2_MAGIC: u32 = 0x1954_0119;
/// Where the superblock of each version lives (UFS2 may be at 8 KiB too).
pub const UFS1_SBLOCK: u64 = 8192;
pub const UFS2_SBLOCK: u64 = 65536;
/// The superblock area read (`SBLOCKSIZE`).
pub const SBLOCKSIZE: usize = 8192;

const MAGIC_OFF: usize = 1372;
const FS_UNCLEAN: i32 = 0x01;
const FS_NEEDSFSCK: i32 = 0x04;
const FS_FLAGS_UPDATED: u8 = 0x80;
const FS_METACKHASH: i32 = 0x200;
/// `fs_old_inodefmt` of every filesystem since 4.4BSD (directory entries with a type).
const FS_44INODEFMT: i32 = 2;
/// Most cylinder groups accepted: far above what any real filesystem has, low enough
/// that the per-group summary stays small.
const MAX_CG: u32 = 1 << 20;

/// Which on-disk format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Ufs1,
    Ufs2,
}

/// The cylinder-group summary counts (`struct csum`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Csum {
    pub ndir: i64,
    pub nbfree: i64,
    pub nifree: i64,
    pub nffree: i64,
}

/// The parsed superblock; `raw` is written back with the totals updated.
#[derive(Debug, Clone)]
pub struct Superblock {
    pub version: Version,
    /// Byte offset of the superblock inside the filesystem.
    pub location: u64,
    pub raw: Vec<u8>,
    pub sblkno: u64,
    pub cblkno: u64,
    pub iblkno: u64,
    pub dblkno: u64,
    pub old_cgoffset: u64,
    pub old_cgmask: u64,
    pub ncg: u32,
    pub bsize: u32,
    pub fsize: u32,
    pub frag: u32,
    pub nindir: u32,
    pub inopb: u32,
    pub ipg: u32,
    pub fpg: u64,
    pub cgsize: u32,
    pub cssize: u32,
    pub csaddr: u64,
    /// Size in fragments.
    pub size: u64,
    pub sbsize: u32,
    pub contigsumsize: u32,
    pub maxsymlinklen: u32,
    pub metackhash: u32,
    pub cstotal: Csum,
    pub clean: bool,
    pub flags: i32,
}

fn bad(msg: impl Into<String>) -> String {
    format!("UFS superblock: {}", msg.into())
}

fn pow2_between(v: u32, lo: u32, hi: u32) -> bool {
    v.is_power_of_two() && (lo..=hi).contains(&v)
}

impl Superblock {
    /// Which version the superblock area at `location` holds, if any: `Err` for a
    /// big-endian filesystem (written by a big-endian machine).
    pub fn detect(raw: &[u8], location: u64) -> Result<Option<Version>, String> {
        let m = le32(raw, MAGIC_OFF);
        let be = u32::from_be_bytes(m.to_le_bytes());
        match (m, location) {
            (UFS2_MAGIC, UFS2_SBLOCK) => Ok(Some(Version::Ufs2)),
            // NetBSD's makefs puts UFS2 at 8 KiB and says so in `fs_sblockloc`; FreeBSD
            // accepts that too.
            (UFS2_MAGIC, UFS1_SBLOCK) if le64(raw, 1000) == UFS1_SBLOCK => Ok(Some(Version::Ufs2)),
            (UFS1_MAGIC, UFS1_SBLOCK) => Ok(Some(Version::Ufs1)),
            _ if be == UFS1_MAGIC || be == UFS2_MAGIC => Err(bad(
                "big-endian UFS (written by a big-endian machine) is not supported",
            )),
            _ => Ok(None),
        }
    }

    /// Parse and check the superblock at `location` of a filesystem of `dev_size` bytes.
    pub fn parse(
        raw: Vec<u8>,
        version: Version,
        location: u64,
        dev_size: u64,
    ) -> Result<Superblock, String> {
        let i32_at = |o: usize| le32(&raw, o) as i32;
        let u = |o: usize| le32(&raw, o);
        let nonneg = |o: usize, what: &str| -> Result<u64, String> {
            let v = i32_at(o);
            if v < 0 {
                return Err(bad(format!("negative {what} ({v})")));
            }
            Ok(v as u64)
        };
        let bsize = u(48);
        let fsize = u(52);
        let frag = u(56);
        if !pow2_between(bsize, 4096, 65536) {
            return Err(bad(format!(
                "block size {bsize} is not a power of two in 4096..65536"
            )));
        }
        if !pow2_between(fsize, 512, bsize) || !pow2_between(frag, 1, 8) || fsize * frag != bsize {
            return Err(bad(format!(
                "fragment size {fsize} with {frag} fragments per block does not make the {bsize}-byte block"
            )));
        }
        let ptr = if version == Version::Ufs1 { 4 } else { 8 };
        let dinode = if version == Version::Ufs1 { 128 } else { 256 };
        let ncg = u(44);
        if ncg == 0 || ncg > MAX_CG {
            return Err(bad(format!("{ncg} cylinder groups")));
        }
        let ipg = u(184);
        let inopb = u(120);
        if inopb != bsize / dinode {
            return Err(bad(format!(
                "{inopb} inodes per block, not {}",
                bsize / dinode
            )));
        }
        if ipg == 0
            || !ipg.is_multiple_of(inopb)
            || u64::from(ipg) * u64::from(ncg) > u64::from(u32::MAX)
        {
            return Err(bad(format!("{ipg} inodes per group")));
        }
        let nindir = u(116);
        if nindir != bsize / ptr {
            return Err(bad(format!("{nindir} pointers per indirect block")));
        }
        let fpg = nonneg(188, "fragments per group")?;
        if fpg == 0 || !fpg.is_multiple_of(u64::from(frag)) {
            return Err(bad(format!("{fpg} fragments per group")));
        }
        let (size, csaddr, cstotal) = match version {
            Version::Ufs1 => (
                nonneg(36, "size")?,
                nonneg(152, "summary address")?,
                Csum {
                    ndir: i64::from(i32_at(192)),
                    nbfree: i64::from(i32_at(196)),
                    nifree: i64::from(i32_at(200)),
                    nffree: i64::from(i32_at(204)),
                },
            ),
            Version::Ufs2 => (
                le64(&raw, 1080),
                le64(&raw, 1096),
                Csum {
                    ndir: le64(&raw, 1008) as i64,
                    nbfree: le64(&raw, 1016) as i64,
                    nifree: le64(&raw, 1024) as i64,
                    nffree: le64(&raw, 1032) as i64,
                },
            ),
        };
        let fs_bytes = size
            .checked_mul(u64::from(fsize))
            .ok_or_else(|| bad("size overflows"))?;
        if fs_bytes > dev_size {
            return Err(bad(format!(
                "the filesystem ({fs_bytes} bytes) is larger than its partition ({dev_size} bytes)"
            )));
        }
        if fpg
            .checked_mul(u64::from(ncg - 1))
            .is_none_or(|v| v >= size)
        {
            return Err(bad(format!(
                "{ncg} groups of {fpg} fragments do not fit in {size}"
            )));
        }
        let cgsize = u(160);
        let cssize = u(156);
        if cgsize < 168 || cgsize > bsize {
            return Err(bad(format!("cylinder group size {cgsize}")));
        }
        if u64::from(cssize) < u64::from(ncg) * 16 || cssize > 16 << 20 {
            return Err(bad(format!("summary size {cssize} for {ncg} groups")));
        }
        if csaddr
            .checked_add(u64::from(cssize).div_ceil(u64::from(fsize)))
            .is_none_or(|e| e > size)
        {
            return Err(bad(format!(
                "summary address {csaddr} outside the filesystem"
            )));
        }
        let sblkno = nonneg(8, "superblock offset")?;
        let cblkno = nonneg(12, "group header offset")?;
        let iblkno = nonneg(16, "inode table offset")?;
        let dblkno = nonneg(20, "data offset")?;
        let inode_frags = u64::from(ipg / inopb) * u64::from(frag);
        if !(sblkno < cblkno && cblkno < iblkno && iblkno + inode_frags <= dblkno && dblkno <= fpg)
        {
            return Err(bad("group layout offsets out of order"));
        }
        let (old_cgoffset, old_cgmask) = match version {
            Version::Ufs1 => (nonneg(24, "group offset")?, u64::from(u(28))),
            Version::Ufs2 => (0, 0),
        };
        if old_cgoffset.saturating_mul(u64::from(ncg)) > fpg {
            return Err(bad("group rotation offset too large"));
        }
        let sbsize = u(104);
        if !(1376..=SBLOCKSIZE as u32).contains(&sbsize) {
            return Err(bad(format!("superblock size {sbsize}")));
        }
        let contigsumsize = u(1316);
        if contigsumsize > 64 {
            return Err(bad(format!("cluster summary size {contigsumsize}")));
        }
        let maxsymlinklen = match u(1320) {
            0 => 0,
            n if n == 12 * ptr + 3 * ptr => n,
            n => return Err(bad(format!("short symlink length {n}"))),
        };
        if version == Version::Ufs1 && (le32(&raw, 1324) as i32) < FS_44INODEFMT {
            return Err(bad("pre-4.4BSD inode format is not supported"));
        }
        let old_flags = raw[211];
        let flags = if old_flags & FS_FLAGS_UPDATED != 0 {
            i32_at(1312)
        } else {
            i32::from(old_flags)
        };
        // A kernel without check-hash support clears FS_METACKHASH and lets the hashes
        // go stale; FreeBSD then ignores them, and so do we.
        let metackhash = if version == Version::Ufs2 && flags & FS_METACKHASH != 0 {
            u(1308)
        } else {
            0
        };
        let sb = Superblock {
            version,
            location,
            clean: raw[209] != 0,
            flags,
            sblkno,
            cblkno,
            iblkno,
            dblkno,
            old_cgoffset,
            old_cgmask,
            ncg,
            bsize,
            fsize,
            frag,
            nindir,
            inopb,
            ipg,
            fpg,
            cgsize,
            cssize,
            csaddr,
            size,
            sbsize,
            contigsumsize,
            maxsymlinklen,
            metackhash,
            cstotal,
            raw,
        };
        if sb.metackhash & CK_SUPERBLK != 0 {
            let want = le32(&sb.raw, 1304);
            let got = ckhash::hash_with_hole(&sb.raw[..sb.sbsize as usize], 1304);
            if want != got {
                return Err(bad(format!(
                    "check-hash mismatch (stored {want:#x}, computed {got:#x})"
                )));
            }
        }
        Ok(sb)
    }

    /// Why the filesystem must not be written, if it must not.
    pub fn unclean_reason(&self) -> Option<&'static str> {
        if !self.clean || self.flags & FS_UNCLEAN != 0 {
            Some("the UFS filesystem was not cleanly unmounted: run fsck_ffs in the guest")
        } else if self.flags & FS_NEEDSFSCK != 0 {
            Some("the UFS filesystem is marked as needing fsck: run fsck_ffs in the guest")
        } else {
            None
        }
    }

    /// Why the filesystem must not be written, if it must not: not clean, or it holds
    /// snapshots (FreeBSD copies every block freed under a snapshot into it first,
    /// which this backend does not do).
    pub fn write_refusal(&self) -> Option<&'static str> {
        self.unclean_reason().or_else(|| {
            (0..20)
                .any(|i| le32(&self.raw, 1116 + 4 * i) != 0)
                .then_some("the UFS filesystem has snapshots: remove them in the guest first")
        })
    }

    /// Byte offset of fragment `f`.
    pub fn frag_bytes(&self, f: u64) -> u64 {
        f * u64::from(self.fsize)
    }

    /// First fragment of cylinder group `cg` (`cgbase`).
    pub fn cgbase(&self, cg: u32) -> u64 {
        self.fpg * u64::from(cg)
    }

    /// Where the metadata of group `cg` starts (`cgstart`): UFS1 staggers it.
    pub fn cgstart(&self, cg: u32) -> u64 {
        let base = self.cgbase(cg);
        match self.version {
            Version::Ufs1 => base + self.old_cgoffset * (u64::from(cg) & !self.old_cgmask),
            Version::Ufs2 => base,
        }
    }

    /// Fragments in group `cg` (the last group may be short).
    pub fn cg_frags(&self, cg: u32) -> u64 {
        (self.size - self.cgbase(cg)).min(self.fpg)
    }

    /// Bytes of one on-disk inode.
    pub fn dinode_size(&self) -> usize {
        match self.version {
            Version::Ufs1 => 128,
            Version::Ufs2 => 256,
        }
    }

    /// Highest inode number + 1.
    pub fn inode_count(&self) -> u64 {
        u64::from(self.ipg) * u64::from(self.ncg)
    }

    /// Byte offset of inode `ino` (checked by the caller against [`Self::inode_count`]).
    pub fn inode_bytes(&self, ino: u64) -> u64 {
        let ipg = u64::from(self.ipg);
        let cg = (ino / ipg) as u32;
        let idx = ino % ipg;
        let frag_addr =
            self.cgstart(cg) + self.iblkno + (idx / u64::from(self.inopb)) * u64::from(self.frag);
        self.frag_bytes(frag_addr) + (idx % u64::from(self.inopb)) * self.dinode_size() as u64
    }

    /// Whether the inode block holding `ino` overlaps the superblock.
    pub fn inode_block_holds_superblock(&self, ino: u64) -> bool {
        let first = ino / u64::from(self.inopb) * u64::from(self.inopb);
        let start = self.inode_bytes(first);
        let end = start + u64::from(self.bsize);
        start < self.location + SBLOCKSIZE as u64 && self.location < end
    }

    /// Store the totals, the time of this write `now` (`fs_time`) and the check-hash
    /// into `raw`, ready to be written.
    pub fn store(&mut self, now: i64) {
        if self.version == Version::Ufs1 {
            put_le32(&mut self.raw, 32, now as i32 as u32);
        }
        if self.version == Version::Ufs2 || self.raw[211] & FS_FLAGS_UPDATED != 0 {
            put_le64(&mut self.raw, 1072, now as u64);
        }
        let c = self.cstotal;
        match self.version {
            Version::Ufs1 => {
                for (o, v) in [
                    (192, c.ndir),
                    (196, c.nbfree),
                    (200, c.nifree),
                    (204, c.nffree),
                ] {
                    put_le32(&mut self.raw, o, v as i32 as u32);
                }
                // Kernels that moved the flags also read the 64-bit totals.
                if self.raw[211] & FS_FLAGS_UPDATED != 0 {
                    self.store64(c);
                }
            }
            Version::Ufs2 => self.store64(c),
        }
        if self.metackhash & CK_SUPERBLK != 0 {
            let h = ckhash::hash_with_hole(&self.raw[..self.sbsize as usize], 1304);
            put_le32(&mut self.raw, 1304, h);
        }
    }

    fn store64(&mut self, c: Csum) {
        for (o, v) in [
            (1008, c.ndir),
            (1016, c.nbfree),
            (1024, c.nifree),
            (1032, c.nffree),
        ] {
            put_le64(&mut self.raw, o, v as u64);
        }
    }
}
