//! Directories: `struct direct` records chained by `d_reclen` inside 512-byte chunks
//! (`DIRBLKSIZ`), no record crossing a chunk.

use snf_core::bytes;

use super::inode::Dinode;
use super::UfsFs;

use crate::error::{Error, Result};
use crate::node::FileType;

/// The unit directory records never cross.
pub const DIRBLKSIZ: u64 = 512;
/// Largest directory read (some 400 000 entries, far above any real one; bounds the
/// memory a corrupt size could make us use).
const MAX_DIR: u64 = 16 << 20;

/// One record.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Byte offset of the record in the directory.
    pub pos: u64,
    /// Offset of the previous record in the same chunk, if any.
    pub prev: Option<u64>,
    pub ino: u64,
    pub reclen: u16,
    pub d_type: u8,
    pub name: Vec<u8>,
}

/// The space a record with a name of `len` bytes needs (`DIRSIZ`).
fn dirsiz(len: usize) -> usize {
    (8 + len + 1 + 3) & !3
}

pub fn type_of(t: u8) -> FileType {
    match t {
        1 => FileType::Fifo,
        2 => FileType::CharDevice,
        4 => FileType::Directory,
        6 => FileType::BlockDevice,
        8 => FileType::Regular,
        10 => FileType::Symlink,
        12 => FileType::Socket,
        _ => FileType::Unknown,
    }
}

pub fn dt_of(t: FileType) -> u8 {
    match t {
        FileType::Fifo => 1,
        FileType::CharDevice => 2,
        FileType::Directory => 4,
        FileType::BlockDevice => 6,
        FileType::Regular => 8,
        FileType::Symlink => 10,
        FileType::Socket => 12,
        FileType::Unknown => 0,
    }
}

/// Parse the records of one chunk at directory offset `base`.
fn parse_chunk(chunk: &[u8], base: u64, out: &mut Vec<Entry>) -> Result<()> {
    let mut pos = 0usize;
    let mut prev = None;
    while pos < chunk.len() {
        if pos + 8 > chunk.len() {
            return Err(Error::corrupt(format!(
                "directory record at {} truncated",
                base + pos as u64
            )));
        }
        let ino = u64::from(bytes::le32(chunk, pos));
        let reclen = bytes::le16(chunk, pos + 4);
        let d_type = chunk[pos + 6];
        let namlen = chunk[pos + 7] as usize;
        let r = reclen as usize;
        if r < 8
            || !r.is_multiple_of(4)
            || pos + r > chunk.len()
            || (ino != 0 && r < dirsiz(namlen))
            || (namlen > r.saturating_sub(8))
        {
            return Err(Error::corrupt(format!(
                "directory record at {} has a bad length {reclen}",
                base + pos as u64
            )));
        }
        out.push(Entry {
            pos: base + pos as u64,
            prev,
            ino,
            reclen,
            d_type,
            name: chunk[pos + 8..pos + 8 + namlen].to_vec(),
        });
        prev = Some(base + pos as u64);
        pos += r;
    }
    Ok(())
}

fn encode(buf: &mut [u8], ino: u64, reclen: u16, d_type: u8, name: &[u8]) {
    buf[..8].fill(0);
    bytes::put_le32(buf, 0, ino as u32);
    bytes::put_le16(buf, 4, reclen);
    buf[6] = d_type;
    buf[7] = name.len() as u8;
    let end = dirsiz(name.len()).min(buf.len());
    buf[8..end].fill(0);
    buf[8..8 + name.len()].copy_from_slice(name);
}

/// The first chunk of a new directory `ino` in `parent`: `.` and `..`.
pub fn encode_new_dir(chunk: &mut [u8], ino: u64, parent: u64) {
    let dot = dirsiz(1);
    encode(chunk, ino, dot as u16, 4, b".");
    encode(
        &mut chunk[dot..],
        parent,
        (DIRBLKSIZ as usize - dot) as u16,
        4,
        b"..",
    );
}

impl UfsFs {
    /// Every record of directory `d`, in on-disk order (including free ones, `ino` 0).
    pub(super) fn dir_entries(&self, d: &Dinode) -> Result<Vec<Entry>> {
        if d.size > MAX_DIR {
            return Err(Error::corrupt(format!("directory of {} bytes", d.size)));
        }
        let mut data = vec![0u8; d.size as usize];
        let n = self.read_data(d, 0, &mut data)?;
        data.truncate(n);
        let mut out = Vec::new();
        for (i, chunk) in data.chunks(DIRBLKSIZ as usize).enumerate() {
            if chunk.len() < DIRBLKSIZ as usize {
                return Err(Error::corrupt(format!(
                    "directory size {} not a multiple of 512",
                    d.size
                )));
            }
            parse_chunk(chunk, i as u64 * DIRBLKSIZ, &mut out)?;
        }
        Ok(out)
    }

    fn read_chunk(&self, d: &Dinode, pos: u64) -> Result<(u64, Vec<u8>)> {
        let base = pos / DIRBLKSIZ * DIRBLKSIZ;
        let mut buf = vec![0u8; DIRBLKSIZ as usize];
        self.read_data(d, base, &mut buf)?;
        Ok((base, buf))
    }

    /// Remove record `e` of directory `dir`: the first record of a chunk becomes free
    /// (`d_ino` 0), any other is absorbed by the record before it.
    pub(super) fn remove_entry(&mut self, dir: u64, d: &mut Dinode, e: &Entry) -> Result<()> {
        let (base, mut buf) = self.read_chunk(d, e.pos)?;
        let at = (e.pos - base) as usize;
        match e.prev {
            None => bytes::put_le32(&mut buf, at, 0),
            Some(p) => {
                let p = (p - base) as usize;
                let len = bytes::le16(&buf, p + 4) + e.reclen;
                bytes::put_le16(&mut buf, p + 4, len);
            }
        }
        self.write_data(dir, d, base, &buf)
    }

    /// Add a record for `name` -> `ino`: into the slack of an existing record if one has
    /// room, else in a new chunk at the end.
    pub(super) fn add_entry(
        &mut self,
        dir: u64,
        d: &mut Dinode,
        name: &[u8],
        ino: u64,
        d_type: u8,
    ) -> Result<()> {
        let need = dirsiz(name.len());
        for e in self.dir_entries(d)? {
            let used = if e.ino == 0 { 0 } else { dirsiz(e.name.len()) };
            if usize::from(e.reclen) - used < need {
                continue;
            }
            let (base, mut buf) = self.read_chunk(d, e.pos)?;
            let at = (e.pos - base) as usize;
            if e.ino == 0 {
                encode(&mut buf[at..], ino, e.reclen, d_type, name);
            } else {
                bytes::put_le16(&mut buf, at + 4, used as u16);
                let rest = e.reclen - used as u16;
                encode(&mut buf[at + used..], ino, rest, d_type, name);
            }
            return self.write_data(dir, d, base, &buf);
        }
        let mut buf = vec![0u8; DIRBLKSIZ as usize];
        encode(&mut buf, ino, DIRBLKSIZ as u16, d_type, name);
        let end = d.size;
        self.write_data(dir, d, end, &buf)
    }
}
