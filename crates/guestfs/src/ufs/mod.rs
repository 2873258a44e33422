//! UFS (FreeBSD's UFS2 and the 4.4BSD "44bsd" UFS1 that NetBSD and OpenBSD use), read
//! and written in-process.
//!
//! Why not through the libguestfs appliance like xfs and btrfs: the appliance runs
//! Debian's kernel, which is built without `CONFIG_UFS_FS_WRITE`, so it mounts UFS
//! read-only and the BSD system preparations could not change anything. What those
//! need (reading everything; unlinking, removing empty directories, truncating,
//! rewriting and creating files) is small enough to do here safely.
//!
//! Only little-endian filesystems are handled (every BSD on x86 and arm64); a
//! big-endian one is refused with a typed error. The module is split by concept:
//! [`superblock`], cylinder groups and allocation ([`cg`]), inodes ([`inode`]), block
//! maps (`bmap`), directories (`dir`) and the metadata check-hashes ([`ckhash`]).
//!
//! Everything read from the image is checked before use: geometry against the
//! partition, inode numbers against the inode count, every block pointer against the
//! filesystem size, directory records against their 512-byte chunk. Writes go straight
//! to the image and keep the bitmaps, the per-group counts, the summary area and the
//! superblock totals (and the check-hashes FreeBSD asks for in `fs_metackhash`)
//! consistent after every operation, so `fsck_ffs` finds nothing to fix. A filesystem
//! not cleanly unmounted is read but never written. Soft-updates journals are left
//! untouched: the filesystem stays clean, which is all the journal needs.

mod bmap;
pub mod cg;
pub mod ckhash;
mod dir;
pub mod inode;
pub mod superblock;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::ops::Range;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use snf_core::bytes;

use crate::backend::{Filesystem, FsKind};
use crate::error::{Error, Result};
use crate::node::{DirEntry, FileType, Metadata, NewNode, NodeId, SetAttr};

use cg::Cg;
use inode::Dinode;
use superblock::{Csum, Superblock, Version};

/// The root directory's inode number.
pub const ROOTINO: u64 = 2;
/// Extended-attribute blocks of a UFS2 inode (`UFS_NXADDR`).
const UFS_NXADDR: u64 = 2;
/// Byte offsets of `di_extsize` and `di_extb` in a UFS2 dinode.
const UFS2_EXTSIZE: usize = 92;
const UFS2_EXTB: usize = 96;

/// A UFS filesystem inside an image file at a byte offset.
pub struct UfsFs {
    file: File,
    image: PathBuf,
    offset: u64,
    writable: bool,
    sb: Superblock,
    /// The per-group summary area (`fs_cs`).
    cs: Vec<Csum>,
    /// Cylinder groups changed by the current operation, written by [`UfsFs::flush`].
    dirty: BTreeMap<u32, Cg>,
}

impl std::fmt::Debug for UfsFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UfsFs")
            .field("image", &self.image)
            .field("offset", &self.offset)
            .field("version", &self.sb.version)
            .field("writable", &self.writable)
            .finish()
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn unsupported(what: &str) -> Error {
    Error::Unsupported {
        path: PathBuf::new(),
        what: format!("{what} on UFS"),
    }
}

impl UfsFs {
    /// Open the UFS filesystem in the `size` bytes at byte `offset` of `image`. Writes
    /// are refused unless `writable`; a filesystem not cleanly unmounted opens only for
    /// reading (`writable` then gives an error telling to run `fsck_ffs`).
    pub fn open(image: &Path, offset: u64, size: u64, writable: bool) -> Result<UfsFs> {
        let file = OpenOptions::new()
            .read(true)
            .write(writable)
            .open(image)
            .map_err(|e| Error::io(e).at(image))?;
        let corrupt = |msg: String| Error::Corrupt {
            path: image.to_path_buf(),
            msg,
        };
        let mut found = None;
        for loc in [superblock::UFS2_SBLOCK, superblock::UFS1_SBLOCK] {
            if loc + superblock::SBLOCKSIZE as u64 > size {
                continue;
            }
            let mut raw = vec![0u8; superblock::SBLOCKSIZE];
            file.read_exact_at(&mut raw, offset + loc)
                .map_err(|e| Error::io(e).at(image))?;
            if let Some(v) =
                Superblock::detect(&raw, loc).map_err(|m| Error::UnsupportedFeatures {
                    path: image.to_path_buf(),
                    msg: m,
                })?
            {
                found = Some((raw, v, loc));
                break;
            }
        }
        let Some((raw, version, loc)) = found else {
            return Err(corrupt("no UFS superblock found".into()));
        };
        let sb = Superblock::parse(raw, version, loc, size).map_err(corrupt)?;
        if writable {
            if let Some(why) = sb.write_refusal() {
                return Err(Error::UnsupportedFeatures {
                    path: image.to_path_buf(),
                    msg: why.into(),
                });
            }
        }
        let mut fs = UfsFs {
            file,
            image: image.to_path_buf(),
            offset,
            writable,
            cs: Vec::new(),
            sb,
            dirty: BTreeMap::new(),
        };
        let mut area = vec![0u8; fs.sb.cssize as usize];
        fs.read_bytes(fs.sb.frag_bytes(fs.sb.csaddr), &mut area)
            .map_err(|e| e.at(image))?;
        fs.cs = (0..fs.sb.ncg as usize)
            .map(|i| {
                let g = |k: usize| i64::from(bytes::le32(&area, 16 * i + 4 * k) as i32);
                Csum {
                    ndir: g(0),
                    nbfree: g(1),
                    nifree: g(2),
                    nffree: g(3),
                }
            })
            .collect();
        let root = fs.inode(ROOTINO).map_err(|e| e.at(image))?;
        if root.file_type() != FileType::Directory {
            return Err(corrupt("the root inode is not a directory".into()));
        }
        Ok(fs)
    }

    /// UFS1 or UFS2.
    pub fn version(&self) -> Version {
        self.sb.version
    }

    /// Whether the filesystem was cleanly unmounted (its free maps can be trusted).
    pub fn is_clean(&self) -> bool {
        self.sb.unclean_reason().is_none()
    }

    /// Byte ranges (relative to the filesystem's start) of the blocks all of whose
    /// fragments are free in the cylinder-group maps, merged and sorted: what a dump
    /// may write as holes.
    pub fn free_ranges(&mut self) -> Result<Vec<Range<u64>>> {
        let bs = u64::from(self.sb.bsize);
        let frag = u64::from(self.sb.frag);
        let mut out: Vec<Range<u64>> = Vec::new();
        for c in 0..self.sb.ncg {
            snf_core::cancel::check()?;
            let cg = self.load_cg(c)?;
            let base = self.sb.cgbase(c);
            for b in 0..cg.ndblk / frag {
                let f = b * frag;
                if (f..f + frag).all(|i| cg.frag_free(i)) {
                    let start = self.sb.frag_bytes(base + f);
                    match out.last_mut() {
                        Some(r) if r.end == start => r.end = start + bs,
                        _ => out.push(start..start + bs),
                    }
                }
            }
        }
        Ok(out)
    }

    /// Byte offset (inside the filesystem) of inode `ino`'s on-disk copy.
    pub fn inode_offset(&self, ino: NodeId) -> u64 {
        self.sb.inode_bytes(ino)
    }

    // ---- raw I/O, bounded to the filesystem ----

    fn fs_bytes(&self) -> u64 {
        self.sb.frag_bytes(self.sb.size)
    }

    /// An I/O of `len` bytes at `pos` must stay inside the filesystem: a pointer read
    /// from the guest could aim anywhere in the image.
    fn check_inside(&self, what: &str, pos: u64, len: usize) -> Result<()> {
        if pos
            .checked_add(len as u64)
            .is_none_or(|e| e > self.fs_bytes())
        {
            return Err(Error::corrupt(format!(
                "{what} of {len} bytes at {pos} past the end of the UFS filesystem"
            )));
        }
        Ok(())
    }

    fn read_bytes(&self, pos: u64, buf: &mut [u8]) -> Result<()> {
        self.check_inside("read", pos, buf.len())?;
        self.file
            .read_exact_at(buf, self.offset + pos)
            .map_err(Error::io)
    }

    fn write_bytes(&self, pos: u64, data: &[u8]) -> Result<()> {
        if !self.writable {
            return Err(Error::ReadOnly(PathBuf::new()));
        }
        self.check_inside("write", pos, data.len())?;
        self.file
            .write_all_at(data, self.offset + pos)
            .map_err(Error::io)
    }

    fn check_writable(&self) -> Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(Error::ReadOnly(PathBuf::new()))
        }
    }

    // ---- cylinder groups ----

    fn cg_pos(&self, c: u32) -> u64 {
        self.sb.frag_bytes(self.sb.cgstart(c) + self.sb.cblkno)
    }

    fn load_cg(&self, c: u32) -> Result<Cg> {
        if let Some(cg) = self.dirty.get(&c) {
            return Ok(cg.clone());
        }
        let mut raw = vec![0u8; self.sb.cgsize as usize];
        self.read_bytes(self.cg_pos(c), &mut raw)?;
        Cg::parse(&self.sb, c, raw).map_err(Error::corrupt)
    }

    fn cg_mut(&mut self, c: u32) -> Result<&mut Cg> {
        if !self.dirty.contains_key(&c) {
            let cg = self.load_cg(c)?;
            self.dirty.insert(c, cg);
        }
        Ok(self.dirty.get_mut(&c).expect("just inserted"))
    }

    /// Recount and write every changed group, its summary entry and the superblock.
    fn flush(&mut self) -> Result<()> {
        if self.dirty.is_empty() {
            return Ok(());
        }
        let dirty = std::mem::take(&mut self.dirty);
        for (c, mut cg) in dirty {
            cg.recount(&self.sb);
            let old = self.cs[c as usize];
            let new = cg.cs();
            let t = &mut self.sb.cstotal;
            t.ndir += new.ndir - old.ndir;
            t.nbfree += new.nbfree - old.nbfree;
            t.nifree += new.nifree - old.nifree;
            t.nffree += new.nffree - old.nffree;
            self.cs[c as usize] = new;
            self.write_bytes(self.cg_pos(c), &cg.raw)?;
            let mut entry = [0u8; 16];
            for (k, v) in [new.ndir, new.nbfree, new.nifree, new.nffree]
                .into_iter()
                .enumerate()
            {
                bytes::put_le32(&mut entry, 4 * k, v as i32 as u32);
            }
            self.write_bytes(
                self.sb.frag_bytes(self.sb.csaddr) + 16 * u64::from(c),
                &entry,
            )?;
        }
        self.sb.store(now());
        self.write_bytes(self.sb.location, &self.sb.raw)
    }

    /// Run a change, then write the groups it touched whether it succeeded or not (a
    /// half-done change has still moved blocks between the maps).
    fn mutate<R>(&mut self, f: impl FnOnce(&mut Self) -> Result<R>) -> Result<R> {
        self.check_writable()?;
        let r = f(self);
        let w = self.flush();
        let r = r?;
        w.map(|()| r)
    }

    /// Allocate `nfrags` fragments (a whole block when `nfrags == frag`), preferring
    /// group `pref`.
    fn alloc(&mut self, pref: u32, nfrags: u64) -> Result<u64> {
        let frag = u64::from(self.sb.frag);
        let ncg = self.sb.ncg;
        for k in 0..ncg {
            let c = (pref % ncg + k) % ncg;
            let cs = self.cs[c as usize];
            if !self.dirty.contains_key(&c)
                && cs.nbfree <= 0
                && (nfrags == frag || cs.nffree < nfrags as i64)
            {
                continue;
            }
            let cg = self.cg_mut(c)?;
            let found = if nfrags == frag {
                cg.find_free_block()
            } else {
                cg.find_free_frags(nfrags)
            };
            if let Some(f) = found {
                cg.mark(f, nfrags, false).map_err(Error::corrupt)?;
                return Ok(self.sb.cgbase(c) + f);
            }
        }
        Err(Error::NoSpace(PathBuf::new()))
    }

    /// Return `n` fragments at `addr` to their group.
    fn free_frags(&mut self, addr: u64, n: u64) -> Result<()> {
        self.check_addr(addr, n)?;
        let c = (addr / self.sb.fpg) as u32;
        let rel = addr - self.sb.cgbase(c);
        self.cg_mut(c)?.mark(rel, n, true).map_err(Error::corrupt)
    }

    /// `n` fragments at `addr` lie inside one group's data.
    fn check_addr(&self, addr: u64, n: u64) -> Result<()> {
        let c = addr / self.sb.fpg;
        let ok = addr != 0
            && addr.checked_add(n).is_some_and(|e| e <= self.sb.size)
            && c < u64::from(self.sb.ncg)
            && (addr + n - 1) / self.sb.fpg == c;
        if ok {
            Ok(())
        } else {
            Err(Error::corrupt(format!(
                "block address {addr} (+{n} fragments) outside the UFS filesystem"
            )))
        }
    }

    // ---- inodes ----

    fn check_ino(&self, ino: u64) -> Result<()> {
        if ino < ROOTINO || ino >= self.sb.inode_count() {
            return Err(Error::corrupt(format!("inode number {ino} out of range")));
        }
        Ok(())
    }

    fn inode(&self, ino: u64) -> Result<Dinode> {
        self.check_ino(ino)?;
        let mut raw = vec![0u8; self.sb.dinode_size()];
        self.read_bytes(self.sb.inode_bytes(ino), &mut raw)?;
        Dinode::parse(&self.sb, ino, raw).map_err(Error::corrupt)
    }

    /// An inode that a directory or the caller names: it must be in use.
    fn live_inode(&self, ino: u64) -> Result<Dinode> {
        let d = self.inode(ino)?;
        if d.mode == 0 || d.nlink == 0 {
            return Err(Error::corrupt(format!("inode {ino} is not in use")));
        }
        Ok(d)
    }

    fn put_inode(&self, ino: u64, d: &mut Dinode) -> Result<()> {
        let pos = self.sb.inode_bytes(ino);
        let raw = d.store(&self.sb).to_vec();
        self.write_bytes(pos, &raw)
    }

    fn ino_cg(&self, ino: u64) -> u32 {
        (ino / u64::from(self.sb.ipg)) as u32
    }

    /// Allocate an inode near group `pref`, initialised to zeros but its generation.
    fn alloc_inode(&mut self, pref: u32, dir: bool) -> Result<(u64, Dinode)> {
        let ncg = self.sb.ncg;
        let ipg = u64::from(self.sb.ipg);
        let inopb = u64::from(self.sb.inopb);
        for k in 0..ncg {
            let c = (pref % ncg + k) % ncg;
            if !self.dirty.contains_key(&c) && self.cs[c as usize].nifree <= 0 {
                continue;
            }
            let sb = self.sb.clone();
            let cg = self.cg_mut(c)?;
            let from = if c == 0 { ROOTINO + 1 } else { 0 };
            let Some(i) = cg.find_free_inode(from, ipg) else {
                continue;
            };
            let inited = cg.initediblk(&sb);
            let ino = u64::from(c) * ipg + i;
            if i >= inited && sb.inode_block_holds_superblock(ino) {
                // Never-initialised inode blocks are free space to some tools (NetBSD's
                // makefs, images relocated by hand); one holding the superblock is
                // not for us to zero.
                continue;
            }
            if i >= inited {
                // UFS2 inode blocks past `cg_initediblk` were never written: zero them
                // before use, as the kernel does.
                let end = (i / inopb + 1) * inopb;
                self.dirty.get_mut(&c).expect("loaded").set_initediblk(end);
                let zero = vec![0u8; sb.bsize as usize];
                let first = u64::from(c) * ipg + inited / inopb * inopb;
                let mut b = first;
                while b < u64::from(c) * ipg + end {
                    self.write_bytes(sb.inode_bytes(b), &zero)?;
                    b += inopb;
                }
            }
            self.dirty
                .get_mut(&c)
                .expect("loaded")
                .mark_inode(i, true, dir)
                .map_err(Error::corrupt)?;
            let mut raw = vec![0u8; sb.dinode_size()];
            self.read_bytes(sb.inode_bytes(ino), &mut raw)?;
            let gen_off = if sb.version == Version::Ufs1 { 108 } else { 80 };
            let gen = bytes::le32(&raw, gen_off).wrapping_add(1);
            raw.fill(0);
            bytes::put_le32(&mut raw, gen_off, gen);
            let d = Dinode::parse(&sb, ino, raw).map_err(Error::corrupt)?;
            return Ok((ino, d));
        }
        Err(Error::NoSpace(PathBuf::new()))
    }

    /// Free inode `ino` and all its blocks (its last link is gone).
    fn release_inode(&mut self, ino: u64, mut d: Dinode) -> Result<()> {
        let dir = d.file_type() == FileType::Directory;
        // Checked before anything is freed, so garbage leaves the filesystem as it was.
        let ext = self.ext_area(ino, &d)?;
        if d.has_blocks(&self.sb) {
            self.truncate_blocks(ino, &mut d, 0)?;
        }
        for (a, n) in ext {
            self.free_frags(a, n)?;
        }
        let gen_off = if self.sb.version == Version::Ufs1 {
            108
        } else {
            80
        };
        let gen = bytes::le32(&d.raw, gen_off);
        let mut raw = vec![0u8; self.sb.dinode_size()];
        bytes::put_le32(&mut raw, gen_off, gen);
        let mut z = Dinode::parse(&self.sb, ino, raw).map_err(Error::corrupt)?;
        self.put_inode(ino, &mut z)?;
        let c = self.ino_cg(ino);
        let i = ino % u64::from(self.sb.ipg);
        self.cg_mut(c)?
            .mark_inode(i, false, dir)
            .map_err(Error::corrupt)
    }

    /// A UFS2 inode's extended-attribute blocks (FreeBSD keeps ACLs and MAC labels
    /// there) as fragment runs: up to two, the last as long as `di_extsize` needs.
    /// Deleting a file must free them too, or they stay allocated to nothing.
    fn ext_area(&self, ino: u64, d: &Dinode) -> Result<Vec<(u64, u64)>> {
        let mut runs = Vec::new();
        if self.sb.version != Version::Ufs2 {
            return Ok(runs);
        }
        let bs = u64::from(self.sb.bsize);
        let fsize = u64::from(self.sb.fsize);
        let extsize = u64::from(bytes::le32(&d.raw, UFS2_EXTSIZE));
        if extsize > UFS_NXADDR * bs {
            return Err(Error::corrupt(format!(
                "inode {ino}: extended attribute size {extsize} too large"
            )));
        }
        for k in 0..UFS_NXADDR {
            let a = bytes::le64(&d.raw, UFS2_EXTB + 8 * k as usize);
            if a == 0 {
                continue;
            }
            if extsize <= k * bs {
                return Err(Error::corrupt(format!(
                    "inode {ino}: extended attribute block {k} past the attribute size"
                )));
            }
            let n = (extsize - k * bs).min(bs).div_ceil(fsize);
            self.check_addr(a, n)?;
            runs.push((a, n));
        }
        Ok(runs)
    }

    /// Remove the directory `child` (entry `e` of directory `parent`, inode
    /// `parent_ino`), which must be empty, and free it.
    fn remove_empty_dir(
        &mut self,
        parent_ino: u64,
        parent: &mut Dinode,
        e: &dir::Entry,
        child: Dinode,
    ) -> Result<()> {
        if self
            .dir_entries(&child)?
            .iter()
            .any(|c| c.ino != 0 && c.name != b"." && c.name != b"..")
        {
            return Err(Error::NotEmpty(PathBuf::new()));
        }
        self.remove_entry(parent_ino, parent, e)?;
        // The child's `..` link to the parent goes with it.
        parent.nlink = parent.nlink.saturating_sub(1);
        self.touch(parent_ino, parent)?;
        self.release_inode(e.ino, child)
    }

    /// One directory entry naming the non-directory `ino` is gone: free it with its
    /// last link, else record the change.
    fn drop_link(&mut self, ino: u64, mut d: Dinode) -> Result<()> {
        d.nlink -= 1;
        if d.nlink == 0 {
            self.release_inode(ino, d)
        } else {
            d.ctime = now();
            self.put_inode(ino, &mut d)
        }
    }

    fn touch(&self, ino: u64, d: &mut Dinode) -> Result<()> {
        let t = now();
        d.mtime = t;
        d.ctime = t;
        self.put_inode(ino, d)
    }

    fn metadata_of(&self, ino: u64, d: &Dinode) -> Metadata {
        Metadata {
            node: ino,
            file_type: d.file_type(),
            mode: u32::from(d.mode) & 0o7777,
            uid: d.uid,
            gid: d.gid,
            size: d.size,
            nlink: u32::from(d.nlink),
            mtime: d.mtime,
            atime: d.atime,
            ctime: d.ctime,
            rdev: d.rdev(),
            allocated: d.blocks.saturating_mul(512),
        }
    }

    fn dir_inode(&self, dir: NodeId) -> Result<Dinode> {
        let d = self.live_inode(dir)?;
        if d.file_type() != FileType::Directory {
            return Err(Error::NotADirectory(PathBuf::new()));
        }
        Ok(d)
    }

    /// Directory `dir`'s inode, its entry `name` and the inode that entry names.
    fn entry_of(&self, dir: NodeId, name: &[u8]) -> Result<(Dinode, dir::Entry, Dinode)> {
        let pd = self.dir_inode(dir)?;
        let e = self
            .find_entry(&pd, name)?
            .ok_or_else(|| Error::NotFound(PathBuf::new()))?;
        let d = self.live_inode(e.ino)?;
        Ok((pd, e, d))
    }

    /// Find the live entry `name` of directory `d`.
    fn find_entry(&self, d: &Dinode, name: &[u8]) -> Result<Option<dir::Entry>> {
        Ok(self
            .dir_entries(d)?
            .into_iter()
            .find(|e| e.ino != 0 && e.name == name))
    }

    /// Create `name` in `dir`: a new inode of type `ifmt`, set up by `init` (which may
    /// write its first data), then its directory entry.
    fn create_node(
        &mut self,
        dir: NodeId,
        name: &OsStr,
        ifmt: u16,
        attr: NewNode,
        init: impl FnOnce(&mut Self, u64, &mut Dinode) -> Result<()>,
    ) -> Result<NodeId> {
        let name = check_name(name)?.to_vec();
        self.mutate(|fs| {
            let mut pd = fs.dir_inode(dir)?;
            if fs.find_entry(&pd, &name)?.is_some() {
                return Err(Error::AlreadyExists(PathBuf::new()));
            }
            let is_dir = ifmt == inode::IFDIR;
            if is_dir && pd.nlink >= i16::MAX as u16 {
                return Err(Error::backend("too many links"));
            }
            let (ino, mut d) = fs.alloc_inode(fs.ino_cg(dir), is_dir)?;
            let t = now();
            d.mode = ifmt | (attr.mode & 0o7777) as u16;
            d.nlink = 1;
            d.uid = attr.uid;
            d.gid = attr.gid;
            d.atime = t;
            d.mtime = t;
            d.ctime = t;
            if fs.sb.version == Version::Ufs2 {
                bytes::put_le64(&mut d.raw, 56, t as u64);
            }
            let r = init(fs, ino, &mut d);
            fs.put_inode(ino, &mut d)?;
            let r = r.and_then(|()| {
                let t = dir::dt_of(d.file_type());
                fs.add_entry(dir, &mut pd, &name, ino, t)
            });
            if let Err(e) = r {
                fs.release_inode(ino, d)?;
                return Err(e);
            }
            if is_dir {
                pd.nlink += 1;
            }
            fs.touch(dir, &mut pd)?;
            Ok(ino)
        })
    }

    /// `rename(2)`: the entry moves, replacing a non-directory or an empty directory;
    /// a directory moved to another parent gets its `..` and both parents' link counts
    /// changed, and may not move below itself.
    fn rename_entry(&mut self, from_dir: u64, from: &[u8], to_dir: u64, to: &[u8]) -> Result<()> {
        let fd = self.dir_inode(from_dir)?;
        let e = self
            .find_entry(&fd, from)?
            .ok_or(Error::NotFound(PathBuf::new()))?;
        let mut moving = self.live_inode(e.ino)?;
        let is_dir = moving.file_type() == FileType::Directory;
        let reparent = is_dir && from_dir != to_dir;
        if reparent {
            self.check_not_below(to_dir, e.ino)?;
            if self.dir_inode(to_dir)?.nlink >= i16::MAX as u16 {
                return Err(Error::backend("too many links"));
            }
        }
        let mut td = self.dir_inode(to_dir)?;
        if let Some(t) = self.find_entry(&td, to)? {
            if t.ino == e.ino {
                return Ok(());
            }
            let target = self.live_inode(t.ino)?;
            let target_dir = target.file_type() == FileType::Directory;
            match (is_dir, target_dir) {
                (false, true) => return Err(Error::IsADirectory(PathBuf::new())),
                (true, false) => return Err(Error::NotADirectory(PathBuf::new())),
                (true, true) => self.remove_empty_dir(to_dir, &mut td, &t, target)?,
                (false, false) => {
                    self.remove_entry(to_dir, &mut td, &t)?;
                    self.touch(to_dir, &mut td)?;
                    self.drop_link(t.ino, target)?;
                }
            }
        }
        let mut td = self.dir_inode(to_dir)?;
        self.add_entry(to_dir, &mut td, to, e.ino, dir::dt_of(moving.file_type()))?;
        self.touch(to_dir, &mut td)?;
        let mut fd = self.dir_inode(from_dir)?;
        let old = self
            .dir_entries(&fd)?
            .into_iter()
            .find(|x| x.ino == e.ino && x.name == from)
            .ok_or_else(|| Error::corrupt("renamed entry vanished"))?;
        self.remove_entry(from_dir, &mut fd, &old)?;
        if reparent {
            // Its `..` now links the new parent.
            fd.nlink = fd.nlink.saturating_sub(1);
            self.set_dotdot(e.ino, &mut moving, to_dir)?;
            let mut td = self.dir_inode(to_dir)?;
            td.nlink += 1;
            self.touch(to_dir, &mut td)?;
        }
        self.touch(from_dir, &mut fd)?;
        moving.ctime = now();
        self.put_inode(e.ino, &mut moving)
    }

    /// `Err` if directory `dir` is `ancestor` or below it (moving `ancestor` there
    /// would cut it off the tree). Climbs `..` links, at most as many as there are
    /// inodes.
    fn check_not_below(&self, dir: u64, ancestor: u64) -> Result<()> {
        let mut cur = dir;
        for _ in 0..self.sb.inode_count() {
            if cur == ancestor {
                return Err(Error::InvalidPath(PathBuf::new()));
            }
            if cur == ROOTINO {
                return Ok(());
            }
            let d = self.dir_inode(cur)?;
            cur = self
                .find_entry(&d, b"..")?
                .ok_or_else(|| Error::corrupt(format!("directory {cur} has no `..`")))?
                .ino;
        }
        Err(Error::corrupt("directory `..` links form a loop"))
    }

    /// Point the `..` entry of directory `ino` at `parent`.
    fn set_dotdot(&mut self, ino: u64, d: &mut Dinode, parent: u64) -> Result<()> {
        let e = self
            .find_entry(d, b"..")?
            .ok_or_else(|| Error::corrupt(format!("directory {ino} has no `..`")))?;
        self.write_data(ino, d, e.pos, &(parent as u32).to_le_bytes())
    }
}

fn check_name(name: &OsStr) -> Result<&[u8]> {
    let b = name.as_bytes();
    if b.is_empty()
        || b.len() > 255
        || b.contains(&b'/')
        || b.contains(&0)
        || b == b"."
        || b == b".."
    {
        return Err(Error::InvalidPath(PathBuf::new()));
    }
    Ok(b)
}

impl Filesystem for UfsFs {
    fn kind(&self) -> FsKind {
        match self.sb.version {
            Version::Ufs1 => FsKind::Ufs1,
            Version::Ufs2 => FsKind::Ufs2,
        }
    }

    fn is_writable(&self) -> bool {
        self.writable
    }

    fn root(&self) -> NodeId {
        ROOTINO
    }

    fn lookup(&mut self, dir: NodeId, name: &OsStr) -> Result<Option<NodeId>> {
        let d = self.dir_inode(dir)?;
        Ok(self
            .dir_entries(&d)?
            .into_iter()
            .find(|e| e.ino != 0 && e.name == name.as_bytes())
            .map(|e| e.ino))
    }

    fn metadata(&mut self, node: NodeId) -> Result<Metadata> {
        let d = self.live_inode(node)?;
        Ok(self.metadata_of(node, &d))
    }

    fn read_dir(&mut self, dir: NodeId) -> Result<Vec<DirEntry>> {
        let d = self.dir_inode(dir)?;
        let mut out = Vec::new();
        for e in self.dir_entries(&d)? {
            if e.ino == 0 || e.name == b"." || e.name == b".." {
                continue;
            }
            self.check_ino(e.ino)?;
            let file_type = match dir::type_of(e.d_type) {
                FileType::Unknown => self.live_inode(e.ino)?.file_type(),
                t => t,
            };
            out.push(DirEntry {
                name: OsString::from_vec(e.name),
                node: e.ino,
                file_type,
            });
        }
        Ok(out)
    }

    fn read_link(&mut self, node: NodeId) -> Result<OsString> {
        let d = self.live_inode(node)?;
        if d.file_type() != FileType::Symlink {
            return Err(Error::NotASymlink(PathBuf::new()));
        }
        if d.is_short_symlink(&self.sb) {
            return Ok(OsStr::from_bytes(d.short_link()).to_os_string());
        }
        if d.size > 4096 {
            return Err(Error::corrupt(format!("symlink of {} bytes", d.size)));
        }
        let mut buf = vec![0u8; d.size as usize];
        let n = self.read_data(&d, 0, &mut buf)?;
        buf.truncate(n);
        Ok(OsString::from_vec(buf))
    }

    fn read_at(&mut self, node: NodeId, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let d = self.live_inode(node)?;
        match d.file_type() {
            FileType::Regular => self.read_data(&d, offset, buf),
            FileType::Directory => Err(Error::IsADirectory(PathBuf::new())),
            _ => Err(unsupported("reading a special file")),
        }
    }

    fn write_at(&mut self, node: NodeId, offset: u64, data: &[u8]) -> Result<()> {
        self.mutate(|fs| {
            let mut d = fs.live_inode(node)?;
            match d.file_type() {
                FileType::Regular => {}
                FileType::Directory => return Err(Error::IsADirectory(PathBuf::new())),
                _ => return Err(unsupported("writing a special file")),
            }
            // The inode is written even after an error: blocks already placed must
            // stay accounted for.
            let r = fs.write_data(node, &mut d, offset, data);
            let t = fs.touch(node, &mut d);
            r.and(t)
        })
    }

    fn set_len(&mut self, node: NodeId, size: u64) -> Result<()> {
        self.mutate(|fs| {
            let mut d = fs.live_inode(node)?;
            match d.file_type() {
                FileType::Regular => {}
                FileType::Directory => return Err(Error::IsADirectory(PathBuf::new())),
                _ => return Err(unsupported("truncating a special file")),
            }
            let r = if size < d.size {
                fs.truncate_blocks(node, &mut d, size)
            } else if size > d.size {
                fs.write_data(node, &mut d, size, &[])
            } else {
                Ok(())
            };
            let t = fs.touch(node, &mut d);
            r.and(t)
        })
    }

    fn create_file(&mut self, dir: NodeId, name: &OsStr, attr: NewNode) -> Result<NodeId> {
        self.create_node(dir, name, inode::IFREG, attr, |_, _, _| Ok(()))
    }

    fn mkdir(&mut self, dir: NodeId, name: &OsStr, attr: NewNode) -> Result<NodeId> {
        self.create_node(dir, name, inode::IFDIR, attr, |fs, ino, d| {
            d.nlink = 2;
            let mut chunk = vec![0u8; dir::DIRBLKSIZ as usize];
            dir::encode_new_dir(&mut chunk, ino, dir);
            fs.write_data(ino, d, 0, &chunk)
        })
    }

    fn symlink(
        &mut self,
        dir: NodeId,
        name: &OsStr,
        target: &OsStr,
        attr: NewNode,
    ) -> Result<NodeId> {
        let t = target.as_bytes().to_vec();
        if t.is_empty() || t.len() > 1023 || t.contains(&0) {
            return Err(Error::InvalidPath(PathBuf::new()));
        }
        let attr = NewNode {
            mode: 0o777,
            ..attr
        };
        self.create_node(dir, name, inode::IFLNK, attr, move |fs, ino, d| {
            if (t.len() as u64) < u64::from(fs.sb.maxsymlinklen) {
                d.set_short_link(&t);
                Ok(())
            } else {
                fs.write_data(ino, d, 0, &t)
            }
        })
    }

    fn hard_link(&mut self, node: NodeId, dir: NodeId, name: &OsStr) -> Result<()> {
        let name = check_name(name)?.to_vec();
        self.mutate(|fs| {
            let mut d = fs.live_inode(node)?;
            if d.file_type() == FileType::Directory {
                return Err(Error::IsADirectory(PathBuf::new()));
            }
            if d.nlink >= i16::MAX as u16 {
                return Err(Error::backend("too many links"));
            }
            let mut pd = fs.dir_inode(dir)?;
            if fs
                .dir_entries(&pd)?
                .iter()
                .any(|e| e.ino != 0 && e.name == name)
            {
                return Err(Error::AlreadyExists(PathBuf::new()));
            }
            fs.add_entry(dir, &mut pd, &name, node, dir::dt_of(d.file_type()))?;
            d.nlink += 1;
            d.ctime = now();
            fs.put_inode(node, &mut d)?;
            fs.touch(dir, &mut pd)
        })
    }

    fn unlink(&mut self, dir: NodeId, name: &OsStr) -> Result<()> {
        let name = check_name(name)?.to_vec();
        self.mutate(|fs| {
            let (mut pd, e, d) = fs.entry_of(dir, &name)?;
            if d.file_type() == FileType::Directory {
                return Err(Error::IsADirectory(PathBuf::new()));
            }
            fs.remove_entry(dir, &mut pd, &e)?;
            fs.touch(dir, &mut pd)?;
            fs.drop_link(e.ino, d)
        })
    }

    fn rmdir(&mut self, dir: NodeId, name: &OsStr) -> Result<()> {
        let name = check_name(name)?.to_vec();
        self.mutate(|fs| {
            let (mut pd, e, d) = fs.entry_of(dir, &name)?;
            if d.file_type() != FileType::Directory {
                return Err(Error::NotADirectory(PathBuf::new()));
            }
            fs.remove_empty_dir(dir, &mut pd, &e, d)
        })
    }

    fn rename(
        &mut self,
        from_dir: NodeId,
        from_name: &OsStr,
        to_dir: NodeId,
        to_name: &OsStr,
    ) -> Result<()> {
        let from_name = check_name(from_name)?.to_vec();
        let to_name = check_name(to_name)?.to_vec();
        self.mutate(|fs| fs.rename_entry(from_dir, &from_name, to_dir, &to_name))
    }

    fn set_attr(&mut self, node: NodeId, attr: SetAttr) -> Result<()> {
        self.mutate(|fs| {
            let mut d = fs.live_inode(node)?;
            if let Some(m) = attr.mode {
                d.mode = (d.mode & 0o170000) | (m & 0o7777) as u16;
            }
            if let Some(u) = attr.uid {
                d.uid = u;
            }
            if let Some(g) = attr.gid {
                d.gid = g;
            }
            if let Some(t) = attr.atime {
                d.atime = t;
            }
            if let Some(t) = attr.mtime {
                d.mtime = t;
            }
            d.ctime = now();
            d.clear_nsecs();
            fs.put_inode(node, &mut d)
        })
    }

    fn sync(&mut self) -> Result<()> {
        if self.writable {
            self.flush()?;
            self.file.sync_data().map_err(Error::io)?;
        }
        Ok(())
    }
}
