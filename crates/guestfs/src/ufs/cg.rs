//! Cylinder groups: the inode-used and fragment-free bitmaps, their counts, and the
//! allocation of fragments, blocks and inodes from them.
//!
//! Every change recounts the group's summary (free blocks, free fragments, the
//! fragment-run histogram `cg_frsum`, the cluster map and its histogram) from the free
//! map itself, as `fsck_ffs` pass 5 does, and carries the difference into the
//! per-group summary area and the superblock totals: the counts cannot drift from the
//! maps.

use super::ckhash::{self, CK_CYLGRP};
use super::superblock::{Csum, Superblock, Version};
use snf_core::bytes::{le32, put_le32};

const CG_MAGIC: u32 = 0x0009_0255;
const CKHASH_OFF: usize = 132;
const CS_OFF: usize = 24;
const FRSUM_OFF: usize = 52;

/// One cylinder group header, as read from the disk.
#[derive(Debug, Clone)]
pub struct Cg {
    pub index: u32,
    pub raw: Vec<u8>,
    /// Fragments this group covers.
    pub ndblk: u64,
    iusedoff: usize,
    freeoff: usize,
    clustersumoff: usize,
    clusteroff: usize,
    contigsumsize: usize,
    frag: u64,
    ipg: u64,
}

fn bit(map: &[u8], i: u64) -> bool {
    map[(i / 8) as usize] & (1 << (i % 8)) != 0
}

fn set_bit(map: &mut [u8], i: u64, on: bool) {
    let b = &mut map[(i / 8) as usize];
    if on {
        *b |= 1 << (i % 8);
    } else {
        *b &= !(1 << (i % 8));
    }
}

impl Cg {
    /// Check the header read for group `index`.
    pub fn parse(sb: &Superblock, index: u32, raw: Vec<u8>) -> Result<Cg, String> {
        let bad = |m: String| format!("cylinder group {index}: {m}");
        if le32(&raw, 4) != CG_MAGIC {
            return Err(bad("bad magic number".into()));
        }
        if le32(&raw, 12) != index {
            return Err(bad(format!("claims to be group {}", le32(&raw, 12))));
        }
        let ndblk = u64::from(le32(&raw, 20));
        if ndblk != sb.cg_frags(index) {
            return Err(bad(format!(
                "{ndblk} fragments, expected {}",
                sb.cg_frags(index)
            )));
        }
        let len = raw.len();
        let field = |o: usize, bytes: u64| -> Result<usize, String> {
            let off = le32(&raw, o) as usize;
            if (off as u64).saturating_add(bytes) > len as u64 || off < 168 {
                return Err(bad(format!(
                    "map at {off} ({bytes} bytes) outside the group header"
                )));
            }
            Ok(off)
        };
        let ipg = u64::from(sb.ipg);
        let iusedoff = field(92, ipg.div_ceil(8))?;
        let freeoff = field(96, ndblk.div_ceil(8))?;
        let frag = u64::from(sb.frag);
        let contigsumsize = sb.contigsumsize as usize;
        let (clustersumoff, clusteroff) = if contigsumsize > 0 {
            (
                field(104, 4 * (contigsumsize as u64 + 1))?,
                field(108, (ndblk / frag).div_ceil(8))?,
            )
        } else {
            (0, 0)
        };
        if sb.metackhash & CK_CYLGRP != 0 {
            let want = le32(&raw, CKHASH_OFF);
            let got = ckhash::hash_with_hole(&raw, CKHASH_OFF);
            if want != got {
                return Err(bad(format!(
                    "check-hash mismatch (stored {want:#x}, computed {got:#x})"
                )));
            }
        }
        Ok(Cg {
            index,
            raw,
            ndblk,
            iusedoff,
            freeoff,
            clustersumoff,
            clusteroff,
            contigsumsize,
            frag,
            ipg,
        })
    }

    /// The summary counts stored in the header.
    pub fn cs(&self) -> Csum {
        let g = |i: usize| i64::from(le32(&self.raw, CS_OFF + 4 * i) as i32);
        Csum {
            ndir: g(0),
            nbfree: g(1),
            nifree: g(2),
            nffree: g(3),
        }
    }

    fn set_cs(&mut self, c: Csum) {
        for (i, v) in [c.ndir, c.nbfree, c.nifree, c.nffree]
            .into_iter()
            .enumerate()
        {
            put_le32(&mut self.raw, CS_OFF + 4 * i, v as i32 as u32);
        }
    }

    /// Whether fragment `f` (relative to the group) is free.
    pub fn frag_free(&self, f: u64) -> bool {
        f < self.ndblk && bit(&self.raw[self.freeoff..], f)
    }

    /// Whether inode `i` (index inside the group) is in use.
    pub fn inode_used(&self, i: u64) -> bool {
        i < self.ipg && bit(&self.raw[self.iusedoff..], i)
    }

    /// Mark `n` fragments from `f` free (`free`) or used; `Err` if one already was.
    pub fn mark(&mut self, f: u64, n: u64, free: bool) -> Result<(), String> {
        for i in f..f + n {
            if i >= self.ndblk || self.frag_free(i) == free {
                return Err(format!(
                    "cylinder group {}: fragment {i} already {}",
                    self.index,
                    if free { "free" } else { "in use" }
                ));
            }
        }
        let off = self.freeoff;
        for i in f..f + n {
            set_bit(&mut self.raw[off..], i, free);
        }
        Ok(())
    }

    /// Mark inode index `i` used or free, adjusting the inode and directory counts.
    pub fn mark_inode(&mut self, i: u64, used: bool, dir: bool) -> Result<(), String> {
        if i >= self.ipg || self.inode_used(i) == used {
            return Err(format!(
                "cylinder group {}: inode index {i} already {}",
                self.index,
                if used { "in use" } else { "free" }
            ));
        }
        let off = self.iusedoff;
        set_bit(&mut self.raw[off..], i, used);
        let mut cs = self.cs();
        let d = if used { 1 } else { -1 };
        cs.nifree -= d;
        if dir {
            cs.ndir += d;
        }
        self.set_cs(cs);
        Ok(())
    }

    /// A free inode index, at or after `from`, below `limit`.
    pub fn find_free_inode(&self, from: u64, limit: u64) -> Option<u64> {
        (from..limit.min(self.ipg)).find(|&i| !self.inode_used(i))
    }

    /// The first fully free block (as its first fragment), if any.
    pub fn find_free_block(&self) -> Option<u64> {
        let blocks = self.ndblk / self.frag;
        (0..blocks)
            .map(|b| b * self.frag)
            .find(|&f| (f..f + self.frag).all(|i| self.frag_free(i)))
    }

    /// A run of `n` (< frag) free fragments inside one block; blocks already split are
    /// preferred, so whole blocks stay whole.
    pub fn find_free_frags(&self, n: u64) -> Option<u64> {
        let blocks = self.ndblk / self.frag;
        for b in 0..blocks {
            let base = b * self.frag;
            if (base..base + self.frag).all(|i| self.frag_free(i)) {
                continue;
            }
            let mut run = 0;
            for i in base..base + self.frag {
                run = if self.frag_free(i) { run + 1 } else { 0 };
                if run == n {
                    return Some(i + 1 - n);
                }
            }
        }
        self.find_free_block()
    }

    /// Recount free blocks, free fragments, `cg_frsum` and the cluster summary from the
    /// free map; store them and the check-hash.
    pub fn recount(&mut self, sb: &Superblock) {
        let frag = self.frag;
        // A trailing partial block counts with its missing fragments in use, as
        // `fsck_ffs` counts it.
        let blocks = self.ndblk.div_ceil(frag);
        let full_blocks = self.ndblk / frag;
        let mut frsum = [0i32; 8];
        let (mut nbfree, mut nffree) = (0i64, 0i64);
        let mut clusters = vec![0i32; self.contigsumsize + 1];
        let mut run_blocks = 0usize;
        for b in 0..blocks {
            let base = b * frag;
            let whole = (base..base + frag).all(|i| self.frag_free(i));
            if self.contigsumsize > 0 && b < full_blocks {
                let off = self.clusteroff;
                set_bit(&mut self.raw[off..], b, whole);
                if whole {
                    run_blocks += 1;
                } else if run_blocks > 0 {
                    clusters[run_blocks.min(self.contigsumsize)] += 1;
                    run_blocks = 0;
                }
            }
            if whole {
                nbfree += 1;
                continue;
            }
            let mut run = 0usize;
            for i in base..base + frag {
                if self.frag_free(i) {
                    run += 1;
                    nffree += 1;
                } else if run > 0 {
                    frsum[run] += 1;
                    run = 0;
                }
            }
            if run > 0 {
                frsum[run] += 1;
            }
        }
        if self.contigsumsize > 0 && run_blocks > 0 {
            clusters[run_blocks.min(self.contigsumsize)] += 1;
        }
        for (i, v) in frsum.iter().enumerate() {
            put_le32(&mut self.raw, FRSUM_OFF + 4 * i, *v as u32);
        }
        if self.contigsumsize > 0 {
            for (i, v) in clusters.iter().enumerate().skip(1) {
                put_le32(&mut self.raw, self.clustersumoff + 4 * i, *v as u32);
            }
        }
        let mut cs = self.cs();
        cs.nbfree = nbfree;
        cs.nffree = nffree;
        self.set_cs(cs);
        if sb.metackhash & CK_CYLGRP != 0 {
            put_le32(&mut self.raw, CKHASH_OFF, 0);
            let h = ckhash::hash_with_hole(&self.raw, CKHASH_OFF);
            put_le32(&mut self.raw, CKHASH_OFF, h);
        }
    }

    /// UFS2 initialises inode blocks lazily: inodes at or past this index hold garbage.
    pub fn initediblk(&self, sb: &Superblock) -> u64 {
        match sb.version {
            Version::Ufs1 => self.ipg,
            Version::Ufs2 => u64::from(le32(&self.raw, 120)).min(self.ipg),
        }
    }

    /// Record that inodes below `n` are initialised.
    pub fn set_initediblk(&mut self, n: u64) {
        put_le32(&mut self.raw, 120, n as u32);
    }
}
