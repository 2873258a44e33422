//! A directory of the host served as a guest filesystem.
//!
//! Used by tests (a reference implementation to compare the ext backend against) and by
//! host bundling, which reads the host through it: a symlink in the tree must never lead
//! out of it. So no host path is ever built: every object is reached with `*at` calls
//! relative to a directory handle this backend opened itself, one component at a time,
//! each directory opened with `O_NOFOLLOW` and checked to be the object looked up before.
//! Symlinks are read, never followed.
//!
//! Node ids are small numbers handed out per (device, inode), so two filesystems mounted
//! inside the tree never share an id.

// `Stat`'s field types differ between architectures; the casts are no-ops on some.
#![allow(clippy::unnecessary_cast)]

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, Stat, Timespec, Timestamps, CWD};
use rustix::process::{Gid, Uid};

use crate::backend::{Filesystem, FsKind};
use crate::error::{Error, Result};
use crate::node::{DirEntry, FileType, Metadata, NewNode, NodeId, SetAttr};

/// The root's node id.
const ROOT: NodeId = 1;

/// How many directory handles are kept open; past this the cache starts over, so a
/// large tree never exhausts the process's file descriptors.
const MAX_OPEN_DIRS: usize = 256;

/// Where a node was last seen: its directory and its name there, and what it is.
#[derive(Debug, Clone)]
struct Place {
    parent: NodeId,
    name: OsString,
    key: Key,
}

/// (device, inode): what makes an object unique on the host.
type Key = (u64, u64);

/// A host directory served through the [`Filesystem`] interface.
pub struct DirFs {
    root: Arc<OwnedFd>,
    writable: bool,
    /// Where every node other than the root was last seen.
    places: HashMap<NodeId, Place>,
    ids: HashMap<Key, NodeId>,
    next_id: NodeId,
    /// Open handles of directories used recently.
    dirs: HashMap<NodeId, Arc<OwnedFd>>,
}

fn map_errno(e: rustix::io::Errno) -> Error {
    map_io(e.into())
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
        io::ErrorKind::CrossesDevices => Error::CrossDevice(PathBuf::new()),
        _ => Error::io(e),
    }
}

fn file_type(mode: u32) -> FileType {
    match rfs::FileType::from_raw_mode(mode as _) {
        rfs::FileType::RegularFile => FileType::Regular,
        rfs::FileType::Directory => FileType::Directory,
        rfs::FileType::Symlink => FileType::Symlink,
        rfs::FileType::CharacterDevice => FileType::CharDevice,
        rfs::FileType::BlockDevice => FileType::BlockDevice,
        rfs::FileType::Fifo => FileType::Fifo,
        rfs::FileType::Socket => FileType::Socket,
        _ => FileType::Unknown,
    }
}

fn key(st: &Stat) -> Key {
    (st.st_dev as u64, st.st_ino as u64)
}

fn check_name(name: &OsStr) -> Result<()> {
    let b = name.as_bytes();
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') || b.contains(&0) {
        return Err(Error::InvalidPath(PathBuf::from(name)));
    }
    Ok(())
}

/// `lstat` of `name` in directory `dir`.
fn lstat_at(dir: impl AsFd, name: &OsStr) -> Result<Stat> {
    rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(map_errno)
}

/// Open directory `name` of `dir` without following a symlink.
fn open_dir_at(dir: impl AsFd, name: &OsStr) -> Result<OwnedFd> {
    rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(map_errno)
}

/// A handle on exactly object `name` of `dir` (a symlink itself, never its target)
/// that opens nothing: no device or FIFO is touched.
fn path_handle_at(dir: impl AsFd, name: &OsStr) -> Result<OwnedFd> {
    rfs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(map_errno)
}

/// Change the mode of the object behind `handle` (an `O_PATH` handle on anything but a
/// symlink). `fchmod` refuses `O_PATH` handles and Linux `fchmodat` cannot refuse a
/// symlink, so the change goes through the handle's `/proc` entry, which names exactly
/// the object the handle was opened on.
fn chmod_handle(handle: &OwnedFd, mode: u32) -> Result<()> {
    use std::os::fd::AsRawFd;
    let proc_path = format!("/proc/self/fd/{}", handle.as_raw_fd());
    rfs::chmodat(
        CWD,
        proc_path.as_str(),
        Mode::from_raw_mode(mode as _),
        AtFlags::empty(),
    )
    .map_err(map_errno)
}

/// Change the owner of the object behind `handle` (any kind, symlinks included).
fn chown_handle(handle: &OwnedFd, uid: Option<u32>, gid: Option<u32>) -> Result<()> {
    rfs::chownat(
        handle,
        "",
        uid.map(Uid::from_raw),
        gid.map(Gid::from_raw),
        AtFlags::EMPTY_PATH,
    )
    .map_err(map_errno)
}

impl DirFs {
    /// Serve the host directory `root`; writes are refused unless `writable`. `root`
    /// itself must be a directory, not a symlink to one.
    pub fn open(root: &Path, writable: bool) -> Result<DirFs> {
        let fd = rfs::openat(
            CWD,
            root,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP => {
                Error::NotADirectory(root.to_path_buf())
            }
            e => map_errno(e).at(root),
        })?;
        let st = rfs::fstat(&fd).map_err(|e| map_errno(e).at(root))?;
        let mut ids = HashMap::new();
        ids.insert(key(&st), ROOT);
        Ok(DirFs {
            root: Arc::new(fd),
            writable,
            places: HashMap::new(),
            ids,
            next_id: ROOT + 1,
            dirs: HashMap::new(),
        })
    }

    fn writable(&self) -> Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(Error::ReadOnly(PathBuf::new()))
        }
    }

    /// The node id of object `name` of directory `parent`, whose `lstat` is `st`.
    fn remember(&mut self, parent: NodeId, name: &OsStr, st: &Stat) -> NodeId {
        let k = key(st);
        let id = match self.ids.get(&k) {
            Some(&id) => id,
            None => {
                let id = self.next_id;
                self.next_id += 1;
                self.ids.insert(k, id);
                id
            }
        };
        if id != ROOT {
            self.places.insert(
                id,
                Place {
                    parent,
                    name: name.to_os_string(),
                    key: k,
                },
            );
        }
        id
    }

    fn forget(&mut self, id: NodeId) {
        if let Some(place) = self.places.remove(&id) {
            self.ids.remove(&place.key);
        }
        self.dirs.remove(&id);
    }

    fn place(&self, node: NodeId) -> Result<&Place> {
        self.places
            .get(&node)
            .ok_or_else(|| Error::NotFound(PathBuf::new()))
    }

    /// An open handle on directory `node`, opened component by component from the
    /// nearest directory already open; each one must still be the object it was.
    fn dir_fd(&mut self, node: NodeId) -> Result<Arc<OwnedFd>> {
        // The chain of nodes from `node` up to the first one open (or the root).
        let mut chain = Vec::new();
        let mut at = node;
        let mut fd = loop {
            if at == ROOT {
                break self.root.clone();
            }
            if let Some(fd) = self.dirs.get(&at) {
                break fd.clone();
            }
            if chain.len() > self.places.len() {
                return Err(Error::corrupt("host directory chain loops"));
            }
            chain.push(at);
            at = self.place(at)?.parent;
        };
        if self.dirs.len() + chain.len() > MAX_OPEN_DIRS {
            self.dirs.clear();
        }
        for id in chain.into_iter().rev() {
            let place = self.place(id)?;
            let (name, want) = (place.name.clone(), place.key);
            let next = open_dir_at(&*fd, &name)?;
            let st = rfs::fstat(&next).map_err(map_errno)?;
            if key(&st) != want {
                // Replaced behind our back: whatever is there now is not this node.
                return Err(Error::NotFound(PathBuf::new()));
            }
            fd = Arc::new(next);
            self.dirs.insert(id, fd.clone());
        }
        Ok(fd)
    }

    /// The directory holding non-root `node`, and its name there.
    fn parent_of(&mut self, node: NodeId) -> Result<(Arc<OwnedFd>, OsString, Key)> {
        let place = self.place(node)?.clone();
        Ok((self.dir_fd(place.parent)?, place.name, place.key))
    }

    /// An `O_PATH` handle on exactly `node`, checked to be it.
    fn handle(&mut self, node: NodeId) -> Result<OwnedFd> {
        if node == ROOT {
            return rfs::openat(
                &*self.root,
                ".",
                OFlags::PATH | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(map_errno);
        }
        let (dir, name, want) = self.parent_of(node)?;
        let h = path_handle_at(&*dir, &name)?;
        let st = rfs::fstat(&h).map_err(map_errno)?;
        if key(&st) != want {
            return Err(Error::NotFound(PathBuf::new()));
        }
        Ok(h)
    }

    fn lstat(&mut self, node: NodeId) -> Result<Stat> {
        if node == ROOT {
            return rfs::fstat(&*self.root).map_err(map_errno);
        }
        let (dir, name, want) = self.parent_of(node)?;
        let st = lstat_at(&*dir, &name)?;
        if key(&st) != want {
            return Err(Error::NotFound(PathBuf::new()));
        }
        Ok(st)
    }

    /// Regular file `node`, opened without following a symlink. Anything else is
    /// refused before it is opened (opening a FIFO blocks, a device can act on open).
    fn open_file(&mut self, node: NodeId, write: bool) -> Result<File> {
        if node == ROOT {
            return Err(Error::IsADirectory(PathBuf::new()));
        }
        let (dir, name, want) = self.parent_of(node)?;
        let st = lstat_at(&*dir, &name)?;
        match file_type(st.st_mode as u32) {
            FileType::Regular => {}
            FileType::Directory => return Err(Error::IsADirectory(PathBuf::new())),
            _ => {
                return Err(Error::Unsupported {
                    path: PathBuf::new(),
                    what: "reading or writing a special file".into(),
                })
            }
        }
        let access = if write { OFlags::RDWR } else { OFlags::RDONLY };
        let fd = rfs::openat(
            &*dir,
            &name,
            access | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(map_errno)?;
        let st = rfs::fstat(&fd).map_err(map_errno)?;
        if key(&st) != want || file_type(st.st_mode as u32) != FileType::Regular {
            return Err(Error::NotFound(PathBuf::new()));
        }
        Ok(File::from(fd))
    }

    /// Give a just-created object `name` of `dir` its owner (and, but for symlinks,
    /// mode: the umask narrowed the one asked for at creation, which also cannot carry
    /// set-uid, set-gid or sticky bits).
    fn finish_new(
        &mut self,
        parent: NodeId,
        dir: &OwnedFd,
        name: &OsStr,
        attr: NewNode,
        symlink: bool,
    ) -> Result<NodeId> {
        let h = path_handle_at(dir, name)?;
        let st = rfs::fstat(&h).map_err(map_errno)?;
        // Owner first: a chown clears set-uid and set-gid bits.
        if st.st_uid != attr.uid || st.st_gid != attr.gid {
            chown_handle(&h, Some(attr.uid), Some(attr.gid))?;
        }
        if !symlink {
            chmod_handle(&h, attr.mode & 0o7777)?;
        }
        Ok(self.remember(parent, name, &st))
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
        ROOT
    }

    fn lookup(&mut self, dir: NodeId, name: &OsStr) -> Result<Option<NodeId>> {
        check_name(name)?;
        let fd = self.dir_fd(dir)?;
        match lstat_at(&*fd, name) {
            Ok(st) => Ok(Some(self.remember(dir, name, &st))),
            Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn metadata(&mut self, node: NodeId) -> Result<Metadata> {
        let m = self.lstat(node)?;
        Ok(Metadata {
            node,
            file_type: file_type(m.st_mode as u32),
            mode: m.st_mode as u32 & 0o7777,
            uid: m.st_uid,
            gid: m.st_gid,
            size: m.st_size as u64,
            nlink: m.st_nlink as u32,
            mtime: m.st_mtime as i64,
            atime: m.st_atime as i64,
            ctime: m.st_ctime as i64,
            rdev: m.st_rdev as u64,
            allocated: m.st_blocks as u64 * 512,
        })
    }

    fn read_dir(&mut self, dir: NodeId) -> Result<Vec<DirEntry>> {
        let fd = self.dir_fd(dir)?;
        let mut names = Vec::new();
        for entry in rfs::Dir::read_from(&*fd).map_err(map_errno)? {
            snf_core::cancel::check()?;
            let entry = entry.map_err(map_errno)?;
            let name = OsString::from_vec(entry.file_name().to_bytes().to_vec());
            if name != "." && name != ".." {
                names.push(name);
            }
        }
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            // The entry's own inode number is the covered one for a mount point: only
            // lstat gives the device and inode of what is really there.
            let st = match lstat_at(&*fd, &name) {
                Ok(st) => st,
                Err(Error::NotFound(_)) => continue, // removed meanwhile
                Err(e) => return Err(e),
            };
            out.push(DirEntry {
                node: self.remember(dir, &name, &st),
                file_type: file_type(st.st_mode as u32),
                name,
            });
        }
        Ok(out)
    }

    fn read_link(&mut self, node: NodeId) -> Result<OsString> {
        if node == ROOT {
            return Err(Error::NotASymlink(PathBuf::new()));
        }
        let (dir, name, _) = self.parent_of(node)?;
        match rfs::readlinkat(&*dir, &name, Vec::new()) {
            Ok(target) => Ok(OsString::from_vec(target.into_bytes())),
            Err(rustix::io::Errno::INVAL) => Err(Error::NotASymlink(PathBuf::new())),
            Err(e) => Err(map_errno(e)),
        }
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
        check_name(name)?;
        let fd = self.dir_fd(dir)?;
        rfs::openat(
            &*fd,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode((attr.mode & 0o777) as _),
        )
        .map_err(map_errno)?;
        self.finish_new(dir, &fd, name, attr, false)
    }

    fn mkdir(&mut self, dir: NodeId, name: &OsStr, attr: NewNode) -> Result<NodeId> {
        self.writable()?;
        check_name(name)?;
        let fd = self.dir_fd(dir)?;
        rfs::mkdirat(&*fd, name, Mode::from_raw_mode((attr.mode & 0o777) as _))
            .map_err(map_errno)?;
        self.finish_new(dir, &fd, name, attr, false)
    }

    fn symlink(
        &mut self,
        dir: NodeId,
        name: &OsStr,
        target: &OsStr,
        attr: NewNode,
    ) -> Result<NodeId> {
        self.writable()?;
        check_name(name)?;
        let fd = self.dir_fd(dir)?;
        rfs::symlinkat(target, &*fd, name).map_err(map_errno)?;
        self.finish_new(dir, &fd, name, attr, true)
    }

    fn hard_link(&mut self, node: NodeId, dir: NodeId, name: &OsStr) -> Result<()> {
        self.writable()?;
        check_name(name)?;
        if node == ROOT {
            return Err(Error::IsADirectory(PathBuf::new()));
        }
        let (src_dir, src_name, _) = self.parent_of(node)?;
        let fd = self.dir_fd(dir)?;
        // No AT_SYMLINK_FOLLOW: a symlink is linked itself.
        rfs::linkat(&*src_dir, &src_name, &*fd, name, AtFlags::empty()).map_err(map_errno)
    }

    fn unlink(&mut self, dir: NodeId, name: &OsStr) -> Result<()> {
        self.writable()?;
        check_name(name)?;
        let fd = self.dir_fd(dir)?;
        let st = lstat_at(&*fd, name)?;
        if file_type(st.st_mode as u32) == FileType::Directory {
            return Err(Error::IsADirectory(PathBuf::new()));
        }
        rfs::unlinkat(&*fd, name, AtFlags::empty()).map_err(map_errno)?;
        if let Some(&id) = self.ids.get(&key(&st)) {
            let here = self
                .places
                .get(&id)
                .is_some_and(|p| p.parent == dir && p.name == name);
            if here && st.st_nlink <= 1 {
                self.forget(id);
            } else if here {
                // Other names remain; the next lookup through one of them records it.
                self.places.remove(&id);
            }
        }
        Ok(())
    }

    fn rmdir(&mut self, dir: NodeId, name: &OsStr) -> Result<()> {
        self.writable()?;
        check_name(name)?;
        let fd = self.dir_fd(dir)?;
        let st = lstat_at(&*fd, name)?;
        if file_type(st.st_mode as u32) != FileType::Directory {
            return Err(Error::NotADirectory(PathBuf::new()));
        }
        rfs::unlinkat(&*fd, name, AtFlags::REMOVEDIR).map_err(map_errno)?;
        if let Some(&id) = self.ids.get(&key(&st)) {
            self.forget(id);
        }
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
        check_name(from_name)?;
        check_name(to_name)?;
        let from = self.dir_fd(from_dir)?;
        let to = self.dir_fd(to_dir)?;
        let moved = lstat_at(&*from, from_name)?;
        let replaced = lstat_at(&*to, to_name).ok();
        rfs::renameat(&*from, from_name, &*to, to_name).map_err(map_errno)?;
        if let Some(st) = replaced.filter(|st| key(st) != key(&moved)) {
            if let Some(&id) = self.ids.get(&key(&st)) {
                if st.st_nlink <= 1 || file_type(st.st_mode as u32) == FileType::Directory {
                    self.forget(id);
                } else {
                    self.places.remove(&id);
                }
            }
        }
        // Everything below a moved directory keeps its place: places are relative to
        // the parent, and open handles follow the directory itself.
        self.remember(to_dir, to_name, &moved);
        Ok(())
    }

    fn set_attr(&mut self, node: NodeId, attr: SetAttr) -> Result<()> {
        self.writable()?;
        let h = self.handle(node)?;
        let st = rfs::fstat(&h).map_err(map_errno)?;
        let is_symlink = file_type(st.st_mode as u32) == FileType::Symlink;
        if attr.mode.is_some() && is_symlink {
            return Err(Error::Unsupported {
                path: PathBuf::new(),
                what: "changing the mode of a symlink".into(),
            });
        }
        // Owner first: a chown clears set-uid and set-gid bits.
        if attr.uid.is_some() || attr.gid.is_some() {
            chown_handle(&h, attr.uid, attr.gid)?;
        }
        if let Some(mode) = attr.mode {
            chmod_handle(&h, mode & 0o7777)?;
        }
        if attr.atime.is_some() || attr.mtime.is_some() {
            let ts = |t: Option<i64>, cur: i64| Timespec {
                tv_sec: t.unwrap_or(cur),
                tv_nsec: 0,
            };
            let times = Timestamps {
                last_access: ts(attr.atime, st.st_atime as i64),
                last_modification: ts(attr.mtime, st.st_mtime as i64),
            };
            if node == ROOT {
                rfs::futimens(&*self.root, &times).map_err(map_errno)?;
            } else {
                let (dir, name, _) = self.parent_of(node)?;
                rfs::utimensat(&*dir, &name, &times, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(map_errno)?;
            }
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<()> {
        Ok(())
    }
}
