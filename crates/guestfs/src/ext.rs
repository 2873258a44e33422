//! The ext2/ext3/ext4 backend, through libext2fs (crate `ext2fs`).
//!
//! Node ids are inode numbers. Writes go straight to the image (no journal); every
//! operation leaves the filesystem consistent for `e2fsck -fn`, and [`Filesystem::sync`]
//! or [`Filesystem::close`] writes bitmaps, group descriptors and superblock back
//! (dropping the backend does too, losing its errors: the fallback of error paths).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use ext2fs::{ErrorKind, Ext2Fs, ExtKind, Ino, SuperInfo};

/// Files under this directory are scratch copies written without `fsync`; see
/// [`ext2fs::set_scratch_dir`].
pub use ext2fs::set_scratch_dir;

use crate::backend::{Filesystem, FsKind};
use crate::error::{Error, Result};
use crate::node::{readable_len, DirEntry, FileType, Metadata, NewNode, NodeId, SetAttr};

/// An ext2/3/4 filesystem inside an image file (or block device) at a byte offset.
pub struct ExtFs {
    fs: Ext2Fs,
    kind: FsKind,
}

impl std::fmt::Debug for ExtFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtFs")
            .field("fs", &self.fs)
            .field("kind", &self.kind)
            .finish()
    }
}

/// The guest-filesystem error for an `ext2fs` error. Open errors name the image;
/// node-level errors carry no path (the guest tree adds it).
fn map_err(e: ext2fs::Error) -> Error {
    let path = match &e {
        ext2fs::Error::Open { path, .. }
        | ext2fs::Error::NeedsRecovery { path, .. }
        | ext2fs::Error::Recovery { path, .. }
        | ext2fs::Error::HasErrors { path, .. }
        | ext2fs::Error::UnsupportedFeatures { path, .. } => path.clone(),
        _ => PathBuf::new(),
    };
    if let ext2fs::Error::UnsupportedFeatures {
        fs_kind,
        features,
        version,
        ..
    } = &e
    {
        let what = if features.len() == 1 {
            "a feature"
        } else {
            "features"
        };
        return Error::UnsupportedFeatures {
            path,
            msg: format!(
                "the {} filesystem uses {what} libext2fs {version} does not support: {}",
                fs_kind.name(),
                features.join(", ")
            ),
        };
    }
    let msg = e.to_string();
    match e.kind() {
        ErrorKind::NotFound => Error::NotFound(path),
        ErrorKind::AlreadyExists => Error::AlreadyExists(path),
        ErrorKind::NoSpace => Error::NoSpace(path),
        ErrorKind::NotEmpty => Error::NotEmpty(path),
        ErrorKind::NotADirectory => Error::NotADirectory(path),
        ErrorKind::IsADirectory => Error::IsADirectory(path),
        ErrorKind::ReadOnly => Error::ReadOnly(path),
        ErrorKind::Unsupported => Error::Unsupported { path, what: msg },
        ErrorKind::Corrupt | ErrorKind::HasErrors => Error::Corrupt { path, msg },
        ErrorKind::InvalidArgument if matches!(e, ext2fs::Error::InvalidName { .. }) => {
            Error::InvalidPath(path)
        }
        _ => Error::Backend { path, msg },
    }
}

fn ino(node: NodeId) -> Result<Ino> {
    Ino::try_from(node).map_err(|_| Error::NotFound(PathBuf::new()))
}

fn file_type(t: ext2fs::FileType) -> FileType {
    match t {
        ext2fs::FileType::Regular => FileType::Regular,
        ext2fs::FileType::Directory => FileType::Directory,
        ext2fs::FileType::Symlink => FileType::Symlink,
        ext2fs::FileType::CharDevice => FileType::CharDevice,
        ext2fs::FileType::BlockDevice => FileType::BlockDevice,
        ext2fs::FileType::Fifo => FileType::Fifo,
        ext2fs::FileType::Socket => FileType::Socket,
        ext2fs::FileType::Unknown => FileType::Unknown,
    }
}

/// glibc's `makedev` encoding.
fn makedev(major: u32, minor: u32) -> u64 {
    let (major, minor) = (u64::from(major), u64::from(minor));
    ((major & 0xffff_f000) << 32)
        | ((major & 0x0000_0fff) << 8)
        | ((minor & 0xffff_ff00) << 12)
        | (minor & 0x0000_00ff)
}

impl ExtFs {
    /// Open the ext2/3/4 filesystem that starts `offset` bytes into `image`.
    ///
    /// Writable opens replay a journal that needs recovery first (`e2fsck -E
    /// journal_only`); read-only opens report it. A filesystem marked as having errors
    /// is refused (as [`Error::Corrupt`]).
    pub fn open(image: &Path, offset: u64, writable: bool) -> Result<ExtFs> {
        let fs = Ext2Fs::open(image, offset, writable).map_err(map_err)?;
        let kind = match fs.info().kind() {
            ExtKind::Ext2 => FsKind::Ext2,
            ExtKind::Ext3 => FsKind::Ext3,
            ExtKind::Ext4 => FsKind::Ext4,
        };
        Ok(ExtFs { fs, kind })
    }

    /// The superblock: UUID, label, sizes, free counts (current), features, state.
    pub fn info(&self) -> SuperInfo {
        self.fs.info()
    }

    /// Runs of used blocks as (first block, count); see
    /// [`Ext2Fs::used_block_ranges`]. Multiply by `info().block_size` for bytes.
    pub fn used_block_ranges(&mut self) -> Result<Vec<(u64, u64)>> {
        self.fs.used_block_ranges().map_err(map_err)
    }

    /// The libext2fs handle, for what the trait does not cover (setting xattrs,
    /// device nodes, raw inode fields).
    pub fn ext2fs(&mut self) -> &mut Ext2Fs {
        &mut self.fs
    }

    /// Close, writing everything back, and report errors of that final write.
    pub fn close(self) -> Result<()> {
        self.fs.close().map_err(map_err)
    }
}

impl Filesystem for ExtFs {
    fn kind(&self) -> FsKind {
        self.kind
    }

    fn is_writable(&self) -> bool {
        self.fs.is_writable()
    }

    fn root(&self) -> NodeId {
        NodeId::from(ext2fs::ROOT_INO)
    }

    fn lookup(&mut self, dir: NodeId, name: &OsStr) -> Result<Option<NodeId>> {
        Ok(self
            .fs
            .lookup(ino(dir)?, name.as_bytes())
            .map_err(map_err)?
            .map(NodeId::from))
    }

    fn metadata(&mut self, node: NodeId) -> Result<Metadata> {
        let i = self.fs.inode(ino(node)?).map_err(map_err)?;
        let file_type = file_type(i.file_type());
        let rdev = match file_type {
            FileType::CharDevice | FileType::BlockDevice => makedev(i.rdev_major, i.rdev_minor),
            _ => 0,
        };
        Ok(Metadata {
            node,
            file_type,
            mode: i.permissions(),
            uid: i.uid,
            gid: i.gid,
            size: i.size,
            nlink: i.links,
            mtime: i.mtime,
            atime: i.atime,
            ctime: i.ctime,
            rdev,
            allocated: i.allocated,
        })
    }

    fn read_dir(&mut self, dir: NodeId) -> Result<Vec<DirEntry>> {
        let entries = self.fs.read_dir(ino(dir)?).map_err(map_err)?;
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let mut t = file_type(e.file_type);
            if t == FileType::Unknown {
                // Filesystems without the filetype feature: ask the inode.
                t = file_type(self.fs.inode(e.ino).map_err(map_err)?.file_type());
            }
            out.push(DirEntry {
                name: OsString::from_vec(e.name),
                node: NodeId::from(e.ino),
                file_type: t,
            });
        }
        Ok(out)
    }

    fn read_link(&mut self, node: NodeId) -> Result<OsString> {
        let n = ino(node)?;
        let i = self.fs.inode(n).map_err(map_err)?;
        if i.file_type() != ext2fs::FileType::Symlink {
            return Err(Error::NotASymlink(PathBuf::new()));
        }
        Ok(OsString::from_vec(self.fs.read_link(n).map_err(map_err)?))
    }

    fn read_at(&mut self, node: NodeId, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let n = ino(node)?;
        let i = self.fs.inode(n).map_err(map_err)?;
        match i.file_type() {
            ext2fs::FileType::Regular => {}
            ext2fs::FileType::Directory => return Err(Error::IsADirectory(PathBuf::new())),
            _ => {
                return Err(Error::Unsupported {
                    path: PathBuf::new(),
                    what: "reading data of a special file".into(),
                })
            }
        }
        let want = readable_len(i.size, offset, buf.len());
        if want == 0 {
            return Ok(0);
        }
        self.fs
            .read_at(n, offset, &mut buf[..want])
            .map_err(map_err)
    }

    fn write_at(&mut self, node: NodeId, offset: u64, data: &[u8]) -> Result<()> {
        self.fs.write_at(ino(node)?, offset, data).map_err(map_err)
    }

    fn set_len(&mut self, node: NodeId, size: u64) -> Result<()> {
        self.fs.set_size(ino(node)?, size).map_err(map_err)
    }

    fn create_file(&mut self, dir: NodeId, name: &OsStr, attr: NewNode) -> Result<NodeId> {
        let new = ext2fs::NewInode {
            mode: attr.mode,
            uid: attr.uid,
            gid: attr.gid,
        };
        Ok(NodeId::from(
            self.fs
                .create(ino(dir)?, name.as_bytes(), new)
                .map_err(map_err)?,
        ))
    }

    fn mkdir(&mut self, dir: NodeId, name: &OsStr, attr: NewNode) -> Result<NodeId> {
        let new = ext2fs::NewInode {
            mode: attr.mode,
            uid: attr.uid,
            gid: attr.gid,
        };
        Ok(NodeId::from(
            self.fs
                .mkdir(ino(dir)?, name.as_bytes(), new)
                .map_err(map_err)?,
        ))
    }

    fn symlink(
        &mut self,
        dir: NodeId,
        name: &OsStr,
        target: &OsStr,
        attr: NewNode,
    ) -> Result<NodeId> {
        Ok(NodeId::from(
            self.fs
                .symlink(
                    ino(dir)?,
                    name.as_bytes(),
                    target.as_bytes(),
                    attr.uid,
                    attr.gid,
                )
                .map_err(map_err)?,
        ))
    }

    fn hard_link(&mut self, node: NodeId, dir: NodeId, name: &OsStr) -> Result<()> {
        self.fs
            .link(ino(node)?, ino(dir)?, name.as_bytes())
            .map_err(map_err)
    }

    fn unlink(&mut self, dir: NodeId, name: &OsStr) -> Result<()> {
        self.fs.unlink(ino(dir)?, name.as_bytes()).map_err(map_err)
    }

    fn rmdir(&mut self, dir: NodeId, name: &OsStr) -> Result<()> {
        self.fs.rmdir(ino(dir)?, name.as_bytes()).map_err(map_err)
    }

    fn rename(
        &mut self,
        from_dir: NodeId,
        from_name: &OsStr,
        to_dir: NodeId,
        to_name: &OsStr,
    ) -> Result<()> {
        self.fs
            .rename(
                ino(from_dir)?,
                from_name.as_bytes(),
                ino(to_dir)?,
                to_name.as_bytes(),
            )
            .map_err(map_err)
    }

    fn set_attr(&mut self, node: NodeId, attr: SetAttr) -> Result<()> {
        let attr = ext2fs::SetAttr {
            mode: attr.mode,
            uid: attr.uid,
            gid: attr.gid,
            atime: attr.atime,
            mtime: attr.mtime,
        };
        self.fs.set_attr(ino(node)?, attr).map_err(map_err)
    }

    fn xattrs(&mut self, node: NodeId) -> Result<Vec<(OsString, Vec<u8>)>> {
        Ok(self
            .fs
            .xattrs(ino(node)?)
            .map_err(map_err)?
            .into_iter()
            .map(|(name, value)| (OsString::from_vec(name), value))
            .collect())
    }

    fn sync(&mut self) -> Result<()> {
        self.fs.flush().map_err(map_err)
    }

    fn close(self: Box<Self>) -> Result<()> {
        ExtFs::close(*self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makedev_matches_glibc() {
        assert_eq!(makedev(8, 1), 0x801);
        assert_eq!(makedev(259, 65536), (259 << 8) | (0x10000 << 12));
    }

    #[test]
    fn errors_map_to_guestfs_variants() {
        let op = |kind| ext2fs::Error::Op {
            op: "x",
            ino: 5,
            kind,
            code: 1,
            msg: "m".into(),
        };
        assert!(map_err(op(ErrorKind::NotFound)).is_not_found());
        assert!(matches!(map_err(op(ErrorKind::NoSpace)), Error::NoSpace(_)));
        assert!(matches!(
            map_err(op(ErrorKind::NotEmpty)),
            Error::NotEmpty(_)
        ));
        assert!(matches!(
            map_err(op(ErrorKind::Corrupt)),
            Error::Corrupt { .. }
        ));
        let e = map_err(ext2fs::Error::HasErrors {
            path: "/img".into(),
            offset: 0,
        });
        assert!(matches!(e, Error::Corrupt { .. }), "{e}");
        assert!(e.to_string().contains("marked as having errors"), "{e}");
    }
}
