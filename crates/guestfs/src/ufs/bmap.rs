//! Block maps: file offsets to fragment addresses through the 12 direct pointers and
//! the single, double and triple indirect blocks; reading, writing with allocation,
//! and freeing on truncation.
//!
//! The FFS layout rule every change keeps: all allocated blocks are whole blocks,
//! except the last block of a file shorter than 12 blocks, which is exactly the
//! fragments its bytes need. `fsck_ffs` counts a file's space by that rule.

use snf_core::bytes;

use super::inode::{Dinode, NDADDR, NIADDR};
use super::UfsFs;

use crate::error::{Error, Result};
use crate::node::readable_len;

/// The last indirect block read at each depth: (its address, its pointers).
#[derive(Default)]
struct IndCache([Option<(u64, Vec<u64>)>; NIADDR]);

/// Where a logical block's pointer lives.
enum Loc {
    Direct(usize),
    /// Root pointer `ib[level]`, then one index per indirect block, top down.
    Indirect(usize, Vec<u64>),
}

impl UfsFs {
    fn nindir(&self) -> u64 {
        u64::from(self.sb.nindir)
    }

    fn bsize(&self) -> u64 {
        u64::from(self.sb.bsize)
    }

    fn locate(&self, lbn: u64) -> Result<Loc> {
        if lbn < NDADDR as u64 {
            return Ok(Loc::Direct(lbn as usize));
        }
        let n = self.nindir();
        let mut rest = lbn - NDADDR as u64;
        let mut span = n;
        for level in 0..NIADDR {
            if rest < span {
                let mut idx = vec![0u64; level + 1];
                let mut r = rest;
                for slot in idx.iter_mut().rev() {
                    *slot = r % n;
                    r /= n;
                }
                return Ok(Loc::Indirect(level, idx));
            }
            rest -= span;
            span = span.saturating_mul(n);
        }
        Err(Error::backend(format!(
            "file offset of block {lbn} beyond the UFS limit"
        )))
    }

    /// Bytes a file of `size` bytes allocates for its block `lbn`.
    fn alloc_size(&self, size: u64, lbn: u64) -> u64 {
        let bs = self.bsize();
        if lbn >= NDADDR as u64 || size >= (lbn + 1) * bs {
            bs
        } else {
            let f = u64::from(self.sb.fsize);
            (size % bs).div_ceil(f) * f
        }
    }

    fn frags(&self, bytes: u64) -> u64 {
        bytes / u64::from(self.sb.fsize)
    }

    fn ptr_size(&self) -> usize {
        match self.sb.version {
            super::Version::Ufs1 => 4,
            super::Version::Ufs2 => 8,
        }
    }

    fn read_ptrs(&self, addr: u64) -> Result<Vec<u64>> {
        self.check_addr(addr, u64::from(self.sb.frag))?;
        let mut buf = vec![0u8; self.sb.bsize as usize];
        self.read_bytes(self.sb.frag_bytes(addr), &mut buf)?;
        let p = self.ptr_size();
        Ok(buf
            .chunks_exact(p)
            .map(|c| {
                if p == 4 {
                    u64::from(bytes::le32(c, 0))
                } else {
                    bytes::le64(c, 0)
                }
            })
            .collect())
    }

    fn write_ptr(&self, addr: u64, idx: u64, v: u64) -> Result<()> {
        let p = self.ptr_size();
        let pos = self.sb.frag_bytes(addr) + idx * p as u64;
        if p == 4 {
            let v = u32::try_from(v).map_err(|_| Error::corrupt("UFS1 block address overflow"))?;
            self.write_bytes(pos, &v.to_le_bytes())
        } else {
            self.write_bytes(pos, &v.to_le_bytes())
        }
    }

    /// The fragment address of block `lbn` of `d`, 0 for a hole.
    fn bmap(&self, d: &Dinode, lbn: u64) -> Result<u64> {
        self.bmap_cached(d, lbn, &mut IndCache::default())
    }

    /// [`Self::bmap`] keeping the last indirect block read at each depth, so a
    /// sequential read reads each indirect block once. Only for reads: the cache does
    /// not see writes.
    fn bmap_cached(&self, d: &Dinode, lbn: u64, cache: &mut IndCache) -> Result<u64> {
        let (mut addr, idx) = match self.locate(lbn)? {
            Loc::Direct(i) => (d.db[i], Vec::new()),
            Loc::Indirect(level, idx) => (d.ib[level], idx),
        };
        for (depth, i) in idx.into_iter().enumerate() {
            if addr == 0 {
                return Ok(0);
            }
            let slot = &mut cache.0[depth];
            if slot.as_ref().is_none_or(|(a, _)| *a != addr) {
                *slot = Some((addr, self.read_ptrs(addr)?));
            }
            addr = slot.as_ref().expect("just filled").1[i as usize];
        }
        if addr != 0 {
            self.check_addr(addr, 1)?;
        }
        Ok(addr)
    }

    /// Set the pointer of block `lbn`, allocating the indirect blocks on the way.
    fn set_ptr(&mut self, ino: u64, d: &mut Dinode, lbn: u64, v: u64) -> Result<()> {
        let (level, idx) = match self.locate(lbn)? {
            Loc::Direct(i) => {
                d.db[i] = v;
                return Ok(());
            }
            Loc::Indirect(level, idx) => (level, idx),
        };
        let pref = self.ino_cg(ino);
        let mut addr = d.ib[level];
        if addr == 0 {
            addr = self.alloc_zeroed_block(pref, d)?;
            d.ib[level] = addr;
        }
        for (k, &i) in idx.iter().enumerate() {
            if k + 1 == idx.len() {
                return self.write_ptr(addr, i, v);
            }
            let mut next = self.read_ptrs(addr)?[i as usize];
            if next == 0 {
                next = self.alloc_zeroed_block(pref, d)?;
                self.write_ptr(addr, i, next)?;
            } else {
                self.check_addr(next, u64::from(self.sb.frag))?;
            }
            addr = next;
        }
        Ok(())
    }

    fn alloc_zeroed_block(&mut self, pref: u32, d: &mut Dinode) -> Result<u64> {
        let a = self.alloc(pref, u64::from(self.sb.frag))?;
        self.write_bytes(self.sb.frag_bytes(a), &vec![0u8; self.sb.bsize as usize])?;
        d.blocks += self.bsize() / 512;
        Ok(a)
    }

    /// Read file data at `offset`; holes read as zeros.
    pub(super) fn read_data(&self, d: &Dinode, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let n = readable_len(d.size, offset, buf.len());
        let bs = self.bsize();
        let mut cache = IndCache::default();
        let mut done = 0usize;
        while done < n {
            snf_core::cancel::check()?;
            let pos = offset + done as u64;
            let lbn = pos / bs;
            let inb = pos % bs;
            let len = ((bs - inb) as usize).min(n - done);
            let addr = self.bmap_cached(d, lbn, &mut cache)?;
            let out = &mut buf[done..done + len];
            if addr == 0 {
                out.fill(0);
            } else {
                self.check_addr(addr, self.frags(self.alloc_size(d.size, lbn)).max(1))?;
                self.read_bytes(self.sb.frag_bytes(addr) + inb, out)?;
            }
            done += len;
        }
        Ok(n)
    }

    /// Write `data` at `offset`, growing the file (and its last fragment run) as needed;
    /// bytes between the old end and `offset` read as zeros.
    pub(super) fn write_data(
        &mut self,
        ino: u64,
        d: &mut Dinode,
        offset: u64,
        data: &[u8],
    ) -> Result<()> {
        let bs = self.bsize();
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or_else(|| Error::backend("file offset overflow"))?;
        let new_size = d.size.max(end);
        // Reject sizes the block map cannot reach before touching anything.
        if new_size > 0 {
            self.locate((new_size - 1) / bs)?;
        }
        // Enough whole blocks for every block written, a moved tail and the indirect
        // blocks on the way, checked before anything changes: running out half-way
        // would leave blocks allocated that the inode does not account for.
        let nblocks = (data.len() as u64).div_ceil(bs) + 1;
        let need = nblocks + nblocks / self.nindir() + 2 * NIADDR as u64;
        if need > self.sb.cstotal.nbfree.max(0) as u64 {
            return Err(Error::NoSpace(std::path::PathBuf::new()));
        }
        let pref = self.ino_cg(ino);
        if d.size > 0 && new_size > d.size {
            let last = (d.size - 1) / bs;
            let addr = self.bmap(d, last)?;
            if addr != 0 {
                let have = self.alloc_size(d.size, last);
                let want = self.alloc_size(new_size, last);
                let mut at = addr;
                if want > have {
                    // A fragment run that is no longer the file's tail (or a longer
                    // tail) moves to a run of the new length.
                    let mut buf = vec![0u8; want as usize];
                    self.read_bytes(self.sb.frag_bytes(addr), &mut buf[..have as usize])?;
                    at = self.alloc(pref, self.frags(want))?;
                    self.write_bytes(self.sb.frag_bytes(at), &buf)?;
                    self.free_frags(addr, self.frags(have))?;
                    self.set_ptr(ino, d, last, at)?;
                    d.blocks += (want - have) / 512;
                }
                // Whatever lay past the old end must read as zeros now.
                let tail = d.size % bs;
                if tail != 0 {
                    let zeros = vec![0u8; (want - tail) as usize];
                    self.write_bytes(self.sb.frag_bytes(at) + tail, &zeros)?;
                }
            }
        }
        let mut done = 0usize;
        while done < data.len() {
            snf_core::cancel::check()?;
            let pos = offset + done as u64;
            let lbn = pos / bs;
            let inb = pos % bs;
            let len = ((bs - inb) as usize).min(data.len() - done);
            let chunk = &data[done..done + len];
            let addr = self.bmap(d, lbn)?;
            if addr == 0 {
                let want = self.alloc_size(new_size, lbn);
                let a = self.alloc(pref, self.frags(want))?;
                let mut buf = vec![0u8; want as usize];
                buf[inb as usize..inb as usize + len].copy_from_slice(chunk);
                self.write_bytes(self.sb.frag_bytes(a), &buf)?;
                d.blocks += want / 512;
                self.set_ptr(ino, d, lbn, a)?;
            } else {
                self.check_addr(addr, self.frags(self.alloc_size(new_size, lbn)))?;
                self.write_bytes(self.sb.frag_bytes(addr) + inb, chunk)?;
            }
            done += len;
        }
        d.size = new_size;
        Ok(())
    }

    /// Cut the file to `size` bytes (no larger than now), freeing the blocks past it and
    /// the indirect blocks left empty, shortening the new tail's fragment run and zeroing
    /// the rest of the last block.
    pub(super) fn truncate_blocks(&mut self, ino: u64, d: &mut Dinode, size: u64) -> Result<()> {
        let bs = self.bsize();
        let old = d.size;
        let first = size.div_ceil(bs);
        let mut freed = 0u64;
        for lbn in first..NDADDR as u64 {
            let a = d.db[lbn as usize];
            if a == 0 {
                continue;
            }
            if lbn * bs >= old {
                // A pointer past the end of file: newfs and the kernel never leave one.
                return Err(Error::corrupt(format!(
                    "inode {ino}: block pointer past the end of file"
                )));
            }
            let n = self.frags(self.alloc_size(old, lbn));
            self.free_frags(a, n)?;
            freed += n;
            d.db[lbn as usize] = 0;
        }
        let n = self.nindir();
        let frag = u64::from(self.sb.frag);
        let mut base = NDADDR as u64;
        let mut span = n;
        for level in 0..NIADDR {
            let root = d.ib[level];
            let from = first.saturating_sub(base);
            if root != 0
                && from < span
                && self.free_tree(root, level, span / n, from, &mut freed)?
            {
                self.free_frags(root, frag)?;
                freed += frag;
                d.ib[level] = 0;
            }
            base = base.saturating_add(span);
            span = span.saturating_mul(n);
        }
        if size > 0 {
            let last = (size - 1) / bs;
            let addr = self.bmap(d, last)?;
            if addr != 0 {
                let have = self.alloc_size(old, last);
                let want = self.alloc_size(size, last);
                if want < have {
                    self.free_frags(addr + self.frags(want), self.frags(have - want))?;
                    freed += self.frags(have - want);
                }
                let tail = size % bs;
                if tail != 0 {
                    self.write_bytes(
                        self.sb.frag_bytes(addr) + tail,
                        &vec![0u8; (want - tail) as usize],
                    )?;
                }
            }
        }
        d.blocks = d
            .blocks
            .saturating_sub(freed * u64::from(self.sb.fsize) / 512);
        d.size = size;
        Ok(())
    }

    /// Free the blocks of the indirect block `addr` (pointing `level` levels down, each
    /// entry covering `per` logical blocks) from relative block `from` on; whether it is
    /// now all holes.
    fn free_tree(
        &mut self,
        addr: u64,
        level: usize,
        per: u64,
        from: u64,
        freed: &mut u64,
    ) -> Result<bool> {
        snf_core::cancel::check()?;
        let ptrs = self.read_ptrs(addr)?;
        let frag = u64::from(self.sb.frag);
        let mut empty = true;
        for (i, &p) in ptrs.iter().enumerate() {
            if p == 0 {
                continue;
            }
            let start = i as u64 * per;
            let end = start.saturating_add(per);
            if end <= from {
                empty = false;
                continue;
            }
            let all = if level == 0 {
                true
            } else {
                self.free_tree(
                    p,
                    level - 1,
                    per / self.nindir(),
                    from.saturating_sub(start),
                    freed,
                )?
            };
            if all {
                self.free_frags(p, frag)?;
                *freed += frag;
                self.write_ptr(addr, i as u64, 0)?;
            } else {
                empty = false;
            }
        }
        Ok(empty)
    }
}
