//! The NTFS backend, through libntfs-3g (crate `ntfs3g`).
//!
//! Node ids are MFT record numbers. Names are looked up ignoring case, as Windows does,
//! so `/windows/system32/CONFIG/software` finds `Windows\System32\config\SOFTWARE`.
//! Junctions and symbolic links read as symlinks whose targets the guest tree resolves
//! inside the guest (a `C:\` path starts at the guest root). NTFS has no Unix owners or
//! modes: objects read as root's, `0755` for directories and `0644` for files, and
//! changing those is accepted and ignored. Files Windows compressed (WOF, CompactOS) or
//! deduplicated are refused rather than read as the zeros their $DATA holds. A volume Windows did not shut down fully
//! (hibernated, fast startup, dirty) opens read-only only.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use ntfs3g::{libc_errno as e, EntryKind, Volume};

use crate::backend::{Filesystem, FsKind};
use crate::error::{Error, Result};
use crate::node::{readable_len, DirEntry, FileType, Metadata, NewNode, NodeId, SetAttr};

/// An NTFS volume inside an image file at a byte offset.
#[derive(Debug)]
pub struct NtfsFs {
    vol: Volume,
}

/// The guest-filesystem error for an `ntfs3g` error (node-level ones carry no path).
fn map_err(err: ntfs3g::Error) -> Error {
    let path = PathBuf::new();
    match &err {
        ntfs3g::Error::Hibernated { path: p, .. } | ntfs3g::Error::Unclean { path: p, .. } => {
            let text = err.to_string();
            let prefix = format!("{}: ", p.display());
            return Error::UnsupportedFeatures {
                path: p.clone(),
                msg: text.strip_prefix(&prefix).unwrap_or(&text).to_string(),
            };
        }
        ntfs3g::Error::TooLarge { path: p, .. } => {
            return Error::Corrupt {
                path: p.clone(),
                msg: err.to_string(),
            }
        }
        ntfs3g::Error::Image { path: p, .. } | ntfs3g::Error::Open { path: p, .. } => {
            return Error::Backend {
                path: p.clone(),
                msg: err.to_string(),
            }
        }
        ntfs3g::Error::InvalidName { .. } => return Error::InvalidPath(path),
        ntfs3g::Error::ReadOnly { .. } => return Error::ReadOnly(path),
        ntfs3g::Error::BadReparse { .. } => {
            return Error::Corrupt {
                path,
                msg: err.to_string(),
            }
        }
        _ => {}
    }
    match err.errno() {
        Some(e::ENOENT) => Error::NotFound(path),
        Some(e::EEXIST) => Error::AlreadyExists(path),
        Some(e::ENOSPC) => Error::NoSpace(path),
        Some(e::ENOTEMPTY) => Error::NotEmpty(path),
        Some(e::ENOTDIR) => Error::NotADirectory(path),
        Some(e::EISDIR) => Error::IsADirectory(path),
        Some(e::EROFS) => Error::ReadOnly(path),
        Some(e::ENAMETOOLONG) | Some(e::EINVAL) => Error::InvalidPath(path),
        Some(e::EOPNOTSUPP) => Error::Unsupported {
            path,
            what: err.to_string(),
        },
        _ => Error::Backend {
            path,
            msg: err.to_string(),
        },
    }
}

/// A name as NTFS stores it: Unicode.
fn name_str(name: &OsStr) -> Result<&str> {
    name.to_str()
        .ok_or_else(|| Error::InvalidPath(PathBuf::from(name)))
}

impl NtfsFs {
    /// Open the NTFS volume in bytes `offset..offset + size` of `image`. A writable
    /// open is refused (as [`Error::UnsupportedFeatures`], telling the user to shut
    /// Windows down fully) when the volume is hibernated or was not shut down cleanly.
    pub fn open(image: &Path, offset: u64, size: u64, writable: bool) -> Result<NtfsFs> {
        Ok(NtfsFs {
            vol: Volume::open(image, offset, size, writable).map_err(map_err)?,
        })
    }

    /// The libntfs-3g volume, for what the trait does not cover (cluster bitmap,
    /// reparse data, volume flags).
    pub fn volume(&mut self) -> &mut Volume {
        &mut self.vol
    }

    /// Unmount, writing everything back, and report errors of that final write.
    pub fn close(self) -> Result<()> {
        self.vol.close().map_err(map_err)
    }

    fn file_type(&mut self, st: &ntfs3g::Inode) -> Result<FileType> {
        let maybe_link = st.is_reparse_point() || (st.is_system() && !st.is_dir);
        if maybe_link && self.vol.read_link(st.ino).map_err(map_err)?.is_some() {
            return Ok(FileType::Symlink);
        }
        Ok(if st.is_dir {
            FileType::Directory
        } else {
            FileType::Regular
        })
    }

    fn regular(&mut self, node: NodeId) -> Result<ntfs3g::Inode> {
        let st = self.vol.stat(node).map_err(map_err)?;
        match self.file_type(&st)? {
            FileType::Regular if st.is_reparse_point() => {
                let data = self.vol.reparse_data(node).map_err(map_err)?;
                match ntfs3g::reparse::tag_of(&data) {
                    Some(tag) if ntfs3g::reparse::hides_data(tag) => Err(Error::Unsupported {
                        path: PathBuf::new(),
                        what: format!(
                            "a file compressed or deduplicated by Windows (reparse tag \
                             {tag:#x})"
                        ),
                    }),
                    _ => Ok(st),
                }
            }
            FileType::Regular => Ok(st),
            FileType::Directory => Err(Error::IsADirectory(PathBuf::new())),
            _ => Err(Error::Unsupported {
                path: PathBuf::new(),
                what: "reading or writing the data of a link".into(),
            }),
        }
    }
}

impl Filesystem for NtfsFs {
    fn kind(&self) -> FsKind {
        FsKind::Ntfs
    }

    fn is_writable(&self) -> bool {
        self.vol.is_writable()
    }

    fn root(&self) -> NodeId {
        ntfs3g::ROOT_INO
    }

    fn lookup(&mut self, dir: NodeId, name: &OsStr) -> Result<Option<NodeId>> {
        let name = name_str(name)?;
        let found = self.vol.lookup(dir, name).map_err(map_err)?;
        // The metadata files are not part of the guest's tree.
        Ok(found.filter(|&ino| {
            !(dir == ntfs3g::ROOT_INO && ino < ntfs3g::FIRST_USER_INO && name.starts_with('$'))
        }))
    }

    fn metadata(&mut self, node: NodeId) -> Result<Metadata> {
        let st = self.vol.stat(node).map_err(map_err)?;
        let file_type = self.file_type(&st)?;
        let (mode, size) = match file_type {
            FileType::Directory => (0o755, 0),
            FileType::Symlink => {
                let target = self
                    .vol
                    .read_link(node)
                    .map_err(map_err)?
                    .unwrap_or_default();
                (0o777, target.len() as u64)
            }
            _ => (0o644, st.size),
        };
        Ok(Metadata {
            node,
            file_type,
            mode,
            uid: 0,
            gid: 0,
            size,
            nlink: st.links.max(1),
            mtime: st.mtime,
            atime: st.atime,
            ctime: st.ctime,
            rdev: 0,
            allocated: st.allocated,
        })
    }

    fn read_dir(&mut self, dir: NodeId) -> Result<Vec<DirEntry>> {
        let entries = self.vol.read_dir(dir).map_err(map_err)?;
        let mut out = Vec::with_capacity(entries.len());
        for ent in entries {
            snf_core::cancel::check()?;
            let file_type = match ent.kind {
                EntryKind::Directory => FileType::Directory,
                EntryKind::File => FileType::Regular,
                // Links and other reparse points: the record says which.
                _ => {
                    let st = self.vol.stat(ent.ino).map_err(map_err)?;
                    self.file_type(&st)?
                }
            };
            out.push(DirEntry {
                name: OsString::from(ent.name),
                node: ent.ino,
                file_type,
            });
        }
        Ok(out)
    }

    fn read_link(&mut self, node: NodeId) -> Result<OsString> {
        match self.vol.read_link(node).map_err(map_err)? {
            Some(target) => Ok(OsString::from(target)),
            None => Err(Error::NotASymlink(PathBuf::new())),
        }
    }

    fn read_at(&mut self, node: NodeId, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let st = self.regular(node)?;
        let want = readable_len(st.size, offset, buf.len());
        if want == 0 {
            return Ok(0);
        }
        self.vol
            .read_at(node, offset, &mut buf[..want])
            .map_err(map_err)
    }

    fn write_at(&mut self, node: NodeId, offset: u64, data: &[u8]) -> Result<()> {
        self.regular(node)?;
        self.vol.write_at(node, offset, data).map_err(map_err)
    }

    fn set_len(&mut self, node: NodeId, size: u64) -> Result<()> {
        self.regular(node)?;
        self.vol.truncate(node, size).map_err(map_err)
    }

    fn create_file(&mut self, dir: NodeId, name: &OsStr, _attr: NewNode) -> Result<NodeId> {
        self.vol.create_file(dir, name_str(name)?).map_err(map_err)
    }

    fn mkdir(&mut self, dir: NodeId, name: &OsStr, _attr: NewNode) -> Result<NodeId> {
        self.vol.mkdir(dir, name_str(name)?).map_err(map_err)
    }

    fn symlink(
        &mut self,
        dir: NodeId,
        name: &OsStr,
        target: &OsStr,
        _attr: NewNode,
    ) -> Result<NodeId> {
        let target = target
            .to_str()
            .ok_or_else(|| Error::InvalidPath(PathBuf::from(target)))?;
        self.vol
            .symlink(dir, name_str(name)?, target)
            .map_err(map_err)
    }

    fn hard_link(&mut self, node: NodeId, dir: NodeId, name: &OsStr) -> Result<()> {
        if self.vol.stat(node).map_err(map_err)?.is_dir {
            return Err(Error::IsADirectory(PathBuf::new()));
        }
        self.vol.link(node, dir, name_str(name)?).map_err(map_err)
    }

    fn unlink(&mut self, dir: NodeId, name: &OsStr) -> Result<()> {
        self.vol.unlink(dir, name_str(name)?).map_err(map_err)
    }

    fn rmdir(&mut self, dir: NodeId, name: &OsStr) -> Result<()> {
        self.vol.rmdir(dir, name_str(name)?).map_err(map_err)
    }

    fn rename(
        &mut self,
        from_dir: NodeId,
        from_name: &OsStr,
        to_dir: NodeId,
        to_name: &OsStr,
    ) -> Result<()> {
        self.vol
            .rename(from_dir, name_str(from_name)?, to_dir, name_str(to_name)?)
            .map_err(map_err)
    }

    fn set_attr(&mut self, node: NodeId, attr: SetAttr) -> Result<()> {
        if attr.atime.is_some() || attr.mtime.is_some() {
            self.vol
                .set_times(node, attr.atime, attr.mtime)
                .map_err(map_err)?;
        } else if !self.vol.is_writable() {
            return Err(Error::ReadOnly(PathBuf::new()));
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<()> {
        self.vol.sync().map_err(map_err)
    }

    fn close(self: Box<Self>) -> Result<()> {
        NtfsFs::close(*self)
    }
}
