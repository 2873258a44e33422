//! On-disk inodes (`ufs1_dinode`, 128 bytes; `ufs2_dinode`, 256 bytes) in one common
//! form; the raw bytes are kept so fields this backend does not know survive a rewrite.

use super::ckhash::{self, CK_INODE};
use super::superblock::{Superblock, Version};
use crate::node::FileType;
use snf_core::bytes::{le16, le32, le64, put_le16, put_le32, put_le64};

/// Direct block pointers.
pub const NDADDR: usize = 12;
/// Indirect pointers (single, double, triple).
pub const NIADDR: usize = 3;

pub const IFDIR: u16 = 0o040000;
pub const IFREG: u16 = 0o100000;
pub const IFLNK: u16 = 0o120000;
const UFS2_CKHASH: usize = 244;

/// One inode.
#[derive(Debug, Clone)]
pub struct Dinode {
    pub raw: Vec<u8>,
    pub version: Version,
    pub mode: u16,
    pub nlink: u16,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// Allocated space in 512-byte units.
    pub blocks: u64,
    pub atime: i64,
    pub mtime: i64,
    pub ctime: i64,
    pub db: [u64; NDADDR],
    pub ib: [u64; NIADDR],
}

impl Dinode {
    /// Parse inode `ino` from `raw` (the size of one dinode), verifying its check-hash.
    pub fn parse(sb: &Superblock, ino: u64, raw: Vec<u8>) -> Result<Dinode, String> {
        let v = sb.version;
        let mut d = Dinode {
            version: v,
            mode: le16(&raw, 0),
            nlink: le16(&raw, 2),
            uid: 0,
            gid: 0,
            size: 0,
            blocks: 0,
            atime: 0,
            mtime: 0,
            ctime: 0,
            db: [0; NDADDR],
            ib: [0; NIADDR],
            raw: Vec::new(),
        };
        match v {
            Version::Ufs1 => {
                d.size = le64(&raw, 8);
                d.atime = i64::from(le32(&raw, 16) as i32);
                d.mtime = i64::from(le32(&raw, 24) as i32);
                d.ctime = i64::from(le32(&raw, 32) as i32);
                for i in 0..NDADDR {
                    d.db[i] = u64::from(le32(&raw, 40 + 4 * i));
                }
                for i in 0..NIADDR {
                    d.ib[i] = u64::from(le32(&raw, 88 + 4 * i));
                }
                d.blocks = u64::from(le32(&raw, 104));
                d.uid = le32(&raw, 112);
                d.gid = le32(&raw, 116);
            }
            Version::Ufs2 => {
                d.uid = le32(&raw, 4);
                d.gid = le32(&raw, 8);
                d.size = le64(&raw, 16);
                d.blocks = le64(&raw, 24);
                d.atime = le64(&raw, 32) as i64;
                d.mtime = le64(&raw, 40) as i64;
                d.ctime = le64(&raw, 48) as i64;
                for i in 0..NDADDR {
                    d.db[i] = le64(&raw, 112 + 8 * i);
                }
                for i in 0..NIADDR {
                    d.ib[i] = le64(&raw, 208 + 8 * i);
                }
                // A never-used inode (all zeros) carries no hash.
                if sb.metackhash & CK_INODE != 0 && d.mode != 0 {
                    let want = le32(&raw, UFS2_CKHASH);
                    let got = ckhash::hash_with_hole(&raw, UFS2_CKHASH);
                    if want != got {
                        return Err(format!(
                            "inode {ino}: check-hash mismatch (stored {want:#x}, computed {got:#x})"
                        ));
                    }
                }
            }
        }
        if d.size > i64::MAX as u64 {
            return Err(format!("inode {ino}: size {} too large", d.size));
        }
        d.raw = raw;
        Ok(d)
    }

    /// The bytes to write back, with the fields stored and the check-hash updated.
    pub fn store(&mut self, sb: &Superblock) -> &[u8] {
        let r = &mut self.raw;
        put_le16(r, 0, self.mode);
        put_le16(r, 2, self.nlink);
        match self.version {
            Version::Ufs1 => {
                put_le64(r, 8, self.size);
                put_le32(r, 16, self.atime as u32);
                put_le32(r, 24, self.mtime as u32);
                put_le32(r, 32, self.ctime as u32);
                for i in 0..NDADDR {
                    put_le32(r, 40 + 4 * i, self.db[i] as u32);
                }
                for i in 0..NIADDR {
                    put_le32(r, 88 + 4 * i, self.ib[i] as u32);
                }
                put_le32(r, 104, self.blocks as u32);
                put_le32(r, 112, self.uid);
                put_le32(r, 116, self.gid);
            }
            Version::Ufs2 => {
                put_le32(r, 4, self.uid);
                put_le32(r, 8, self.gid);
                put_le64(r, 16, self.size);
                put_le64(r, 24, self.blocks);
                put_le64(r, 32, self.atime as u64);
                put_le64(r, 40, self.mtime as u64);
                put_le64(r, 48, self.ctime as u64);
                for i in 0..NDADDR {
                    put_le64(r, 112 + 8 * i, self.db[i]);
                }
                for i in 0..NIADDR {
                    put_le64(r, 208 + 8 * i, self.ib[i]);
                }
                // As FreeBSD: a free inode (mode 0) keeps whatever hash it has.
                if sb.metackhash & CK_INODE != 0 && self.mode != 0 {
                    put_le32(r, UFS2_CKHASH, 0);
                    let h = ckhash::hash_with_hole(r, UFS2_CKHASH);
                    put_le32(r, UFS2_CKHASH, h);
                }
            }
        }
        &self.raw
    }

    /// Set the nanosecond parts of the times to zero along with new seconds.
    pub fn clear_nsecs(&mut self) {
        let offs: &[usize] = match self.version {
            Version::Ufs1 => &[20, 28, 36],
            Version::Ufs2 => &[64, 68, 72],
        };
        for &o in offs {
            put_le32(&mut self.raw, o, 0);
        }
    }

    pub fn file_type(&self) -> FileType {
        FileType::from_mode(u32::from(self.mode))
    }

    /// Whether the block pointers are data addresses (not a short symlink's text or a
    /// device number).
    pub fn has_blocks(&self, sb: &Superblock) -> bool {
        match self.file_type() {
            FileType::Regular | FileType::Directory => true,
            FileType::Symlink => !self.is_short_symlink(sb),
            _ => false,
        }
    }

    /// A symlink whose target is stored in the pointer area.
    pub fn is_short_symlink(&self, sb: &Superblock) -> bool {
        self.file_type() == FileType::Symlink
            && self.size < u64::from(sb.maxsymlinklen)
            && self.blocks == 0
    }

    /// The target of a short symlink (its bytes in the pointer area).
    pub fn short_link(&self) -> &[u8] {
        let start = match self.version {
            Version::Ufs1 => 40,
            Version::Ufs2 => 112,
        };
        &self.raw[start..start + self.size as usize]
    }

    /// Make this a short symlink to `target` (shorter than the pointer area), stored
    /// where the block pointers would be.
    pub fn set_short_link(&mut self, target: &[u8]) {
        let w = match self.version {
            Version::Ufs1 => 4,
            Version::Ufs2 => 8,
        };
        let mut area = vec![0u8; (NDADDR + NIADDR) * w];
        area[..target.len()].copy_from_slice(target);
        let word = |i: usize| {
            let mut b = [0u8; 8];
            b[..w].copy_from_slice(&area[i * w..(i + 1) * w]);
            u64::from_le_bytes(b)
        };
        for i in 0..NDADDR {
            self.db[i] = word(i);
        }
        for i in 0..NIADDR {
            self.ib[i] = word(NDADDR + i);
        }
        self.size = target.len() as u64;
    }

    /// The raw device number of a device node (the first pointer slot).
    pub fn rdev(&self) -> u64 {
        match self.file_type() {
            FileType::CharDevice | FileType::BlockDevice => self.db[0],
            _ => 0,
        }
    }
}
