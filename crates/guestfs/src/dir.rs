//! A directory of the host served as a guest filesystem.
//!
//! Used by tests (a reference implementation to compare the ext backend against) and by
//! host bundling. Node ids are the host inode numbers; the backend remembers one path
//! per node. Nothing here follows a host symlink: every object is reached through
//! directories this backend looked up itself, and files are opened with `O_NOFOLLOW`.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirEntryExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::backend::{Filesystem, FsKind};
use crate::error::{Error, Result};
use crate::node::{DirEntry, FileType, Metadata, NewNode, NodeId, SetAttr};

/// A host directory served through the [`Filesystem`] interface.
pub struct DirFs {
    root: PathBuf,
    root_ino: NodeId,
    writable: bool,
    /// Host path (relative to `root`) of every node seen so far.
    paths: HashMap<NodeId, PathBuf>,
}

fn map_io(e: io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::NotFound => Error::NotFound(PathBuf::new()),
        io::ErrorKind::AlreadyExists => Error::AlreadyExists(PathBuf::new()),
        io::ErrorKind::DirectoryNotEmpty => Error::NotEmpty(PathBuf::new()),
        io::ErrorKind::NotADirectory => Error::NotADirectory(PathBuf::new()),
        io::ErrorKind::IsADirectory => Error::IsADirectory(PathBuf::new()),
        io::ErrorKind::StorageFull => Error::NoSpace(PathBuf::new()),
        io::ErrorKind::ReadOnlyFilesystem => Error::ReadOnly(PathBuf::new()),
        _ => Error::io(e),
    }
}

fn file_type(ft: fs::FileType) -> FileType {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_file() {
        FileType::Regular
    } else if ft.is_dir() {
        FileType::Directory
    } else if ft.is_symlink() {
        FileType::Symlink
    } else if ft.is_char_device() {
        FileType::CharDevice
    } else if ft.is_block_device() {
        FileType::BlockDevice
    } else if ft.is_fifo() {
        FileType::Fifo
    } else if ft.is_socket() {
        FileType::Socket
    } else {
        FileType::Unknown
    }
}

fn check_name(name: &OsStr) -> Result<()> {
    let b = name.as_bytes();
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') || b.contains(&0) {
        return Err(Error::InvalidPath(PathBuf::from(name)));
    }
    Ok(())
}

impl DirFs {
    /// Serve the host directory `root`; writes are refused unless `writable`.
    pub fn open(root: &Path, writable: bool) -> Result<DirFs> {
        let meta = fs::symlink_metadata(root).map_err(|e| map_io(e).at(root))?;
        if !meta.is_dir() {
            return Err(Error::NotADirectory(root.to_path_buf()));
        }
        let mut paths = HashMap::new();
        paths.insert(meta.ino(), PathBuf::new());
        Ok(DirFs {
            root: root.to_path_buf(),
            root_ino: meta.ino(),
            writable,
            paths,
        })
    }

    fn rel(&self, node: NodeId) -> Result<&Path> {
        self.paths
            .get(&node)
            .map(PathBuf::as_path)
            .ok_or_else(|| Error::backend(format!("unknown node {node}")))
    }

    fn host(&self, node: NodeId) -> Result<PathBuf> {
        Ok(self.root.join(self.rel(node)?))
    }

    fn child_host(&self, dir: NodeId, name: &OsStr) -> Result<(PathBuf, PathBuf)> {
        check_name(name)?;
        let rel = self.rel(dir)?.join(name);
        Ok((self.root.join(&rel), rel))
    }

    fn writable(&self) -> Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(Error::ReadOnly(PathBuf::new()))
        }
    }

    fn remember(&mut self, rel: PathBuf) -> Result<NodeId> {
        let meta = fs::symlink_metadata(self.root.join(&rel)).map_err(map_io)?;
        self.paths.insert(meta.ino(), rel);
        Ok(meta.ino())
    }

    fn open_file(&self, node: NodeId, write: bool) -> Result<File> {
        OpenOptions::new()
            .read(true)
            .write(write)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(self.host(node)?)
            .map_err(map_io)
    }

    fn apply_owner(path: &Path, attr: NewNode) -> Result<()> {
        let meta = fs::symlink_metadata(path).map_err(map_io)?;
        if meta.uid() != attr.uid || meta.gid() != attr.gid {
            std::os::unix::fs::lchown(path, Some(attr.uid), Some(attr.gid)).map_err(map_io)?;
        }
        Ok(())
    }
}

impl Filesystem for DirFs {
    fn kind(&self) -> FsKind {
        FsKind::HostDir
    }

    fn is_writable(&self) -> bool {
        self.writable
    }

    fn root(&self) -> NodeId {
        self.root_ino
    }

    fn lookup(&mut self, dir: NodeId, name: &OsStr) -> Result<Option<NodeId>> {
        let (host, rel) = self.child_host(dir, name)?;
        match fs::symlink_metadata(&host) {
            Ok(meta) => {
                self.paths.insert(meta.ino(), rel);
                Ok(Some(meta.ino()))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(map_io(e)),
        }
    }

    fn metadata(&mut self, node: NodeId) -> Result<Metadata> {
        let m = fs::symlink_metadata(self.host(node)?).map_err(map_io)?;
        Ok(Metadata {
            node,
            file_type: file_type(m.file_type()),
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            size: m.size(),
            nlink: m.nlink() as u32,
            mtime: m.mtime(),
            atime: m.atime(),
            ctime: m.ctime(),
            rdev: m.rdev(),
            allocated: m.blocks() * 512,
        })
    }

    fn read_dir(&mut self, dir: NodeId) -> Result<Vec<DirEntry>> {
        let rel = self.rel(dir)?.to_path_buf();
        let mut out = Vec::new();
        for entry in fs::read_dir(self.root.join(&rel)).map_err(map_io)? {
            let entry = entry.map_err(map_io)?;
            let ft = entry.file_type().map_err(map_io)?;
            let ino = entry.ino();
            self.paths.insert(ino, rel.join(entry.file_name()));
            out.push(DirEntry {
                name: entry.file_name(),
                node: ino,
                file_type: file_type(ft),
            });
        }
        Ok(out)
    }

    fn read_link(&mut self, node: NodeId) -> Result<OsString> {
        fs::read_link(self.host(node)?)
            .map(PathBuf::into_os_string)
            .map_err(map_io)
    }

    fn read_at(&mut self, node: NodeId, offset: u64, buf: &mut [u8]) -> Result<usize> {
        self.open_file(node, false)?
            .read_at(buf, offset)
            .map_err(map_io)
    }

    fn write_at(&mut self, node: NodeId, offset: u64, data: &[u8]) -> Result<()> {
        self.writable()?;
        self.open_file(node, true)?
            .write_all_at(data, offset)
            .map_err(map_io)
    }

    fn set_len(&mut self, node: NodeId, size: u64) -> Result<()> {
        self.writable()?;
        self.open_file(node, true)?.set_len(size).map_err(map_io)
    }

    fn create_file(&mut self, dir: NodeId, name: &OsStr, attr: NewNode) -> Result<NodeId> {
        self.writable()?;
        let (host, rel) = self.child_host(dir, name)?;
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(attr.mode)
            .open(&host)
            .map_err(map_io)?;
        fs::set_permissions(&host, fs::Permissions::from_mode(attr.mode)).map_err(map_io)?;
        Self::apply_owner(&host, attr)?;
        self.remember(rel)
    }

    fn mkdir(&mut self, dir: NodeId, name: &OsStr, attr: NewNode) -> Result<NodeId> {
        self.writable()?;
        let (host, rel) = self.child_host(dir, name)?;
        fs::create_dir(&host).map_err(map_io)?;
        fs::set_permissions(&host, fs::Permissions::from_mode(attr.mode)).map_err(map_io)?;
        Self::apply_owner(&host, attr)?;
        self.remember(rel)
    }

    fn symlink(
        &mut self,
        dir: NodeId,
        name: &OsStr,
        target: &OsStr,
        attr: NewNode,
    ) -> Result<NodeId> {
        self.writable()?;
        let (host, rel) = self.child_host(dir, name)?;
        std::os::unix::fs::symlink(target, &host).map_err(map_io)?;
        Self::apply_owner(&host, attr)?;
        self.remember(rel)
    }

    fn hard_link(&mut self, node: NodeId, dir: NodeId, name: &OsStr) -> Result<()> {
        self.writable()?;
        let (host, _) = self.child_host(dir, name)?;
        fs::hard_link(self.host(node)?, host).map_err(map_io)
    }

    fn unlink(&mut self, dir: NodeId, name: &OsStr) -> Result<()> {
        self.writable()?;
        let (host, rel) = self.child_host(dir, name)?;
        let meta = fs::symlink_metadata(&host).map_err(map_io)?;
        if meta.is_dir() {
            return Err(Error::IsADirectory(PathBuf::new()));
        }
        fs::remove_file(&host).map_err(map_io)?;
        if self.paths.get(&meta.ino()) == Some(&rel) {
            self.paths.remove(&meta.ino());
        }
        Ok(())
    }

    fn rmdir(&mut self, dir: NodeId, name: &OsStr) -> Result<()> {
        self.writable()?;
        let (host, _) = self.child_host(dir, name)?;
        let meta = fs::symlink_metadata(&host).map_err(map_io)?;
        if !meta.is_dir() {
            return Err(Error::NotADirectory(PathBuf::new()));
        }
        fs::remove_dir(&host).map_err(map_io)?;
        self.paths.remove(&meta.ino());
        Ok(())
    }

    fn rename(
        &mut self,
        from_dir: NodeId,
        from_name: &OsStr,
        to_dir: NodeId,
        to_name: &OsStr,
    ) -> Result<()> {
        self.writable()?;
        let (from, from_rel) = self.child_host(from_dir, from_name)?;
        let (to, to_rel) = self.child_host(to_dir, to_name)?;
        fs::rename(&from, &to).map_err(map_io)?;
        // Every remembered path at or below the old name now lives below the new one.
        for rel in self.paths.values_mut() {
            if let Ok(rest) = rel.strip_prefix(&from_rel) {
                *rel = to_rel.join(rest);
            }
        }
        Ok(())
    }

    fn set_attr(&mut self, node: NodeId, attr: SetAttr) -> Result<()> {
        self.writable()?;
        let host = self.host(node)?;
        let meta = fs::symlink_metadata(&host).map_err(map_io)?;
        if let Some(mode) = attr.mode {
            if meta.file_type().is_symlink() {
                return Err(Error::Unsupported {
                    path: PathBuf::new(),
                    what: "changing the mode of a symlink".into(),
                });
            }
            fs::set_permissions(&host, fs::Permissions::from_mode(mode & 0o7777))
                .map_err(map_io)?;
        }
        if attr.uid.is_some() || attr.gid.is_some() {
            std::os::unix::fs::lchown(&host, attr.uid, attr.gid).map_err(map_io)?;
        }
        if attr.atime.is_some() || attr.mtime.is_some() {
            use rustix::fs::{AtFlags, Timespec, Timestamps, CWD};
            let ts = |t: Option<i64>, cur: i64| Timespec {
                tv_sec: t.unwrap_or(cur),
                tv_nsec: 0,
            };
            let times = Timestamps {
                last_access: ts(attr.atime, meta.atime()),
                last_modification: ts(attr.mtime, meta.mtime()),
            };
            rustix::fs::utimensat(CWD, &host, &times, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| map_io(e.into()))?;
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<()> {
        Ok(())
    }
}
