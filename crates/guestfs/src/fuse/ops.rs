//! The operations on the guest tree, one per kind of kernel request, in FUSE's terms
//! (inode numbers in, attributes and errno out).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use fuser::{Errno, FileAttr, OpenFlags, RenameFlags, Request};

use super::confine;
use super::convert::{attr, errno, kind};
use super::Served;
use crate::node::{Metadata, NewNode, SetAttr};
use crate::tree::GuestFs;

/// A name the kernel sent, checked: one component, not `.` or `..`.
fn check_name(name: &OsStr) -> Result<(), Errno> {
    let b = name.as_bytes();
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') {
        return Err(Errno::EINVAL);
    }
    if b.len() > 255 {
        return Err(Errno::ENAMETOOLONG);
    }
    Ok(())
}

impl Served {
    pub(super) fn guest(&mut self) -> Result<&mut GuestFs, Errno> {
        self.guest.as_mut().ok_or(Errno::EIO)
    }

    pub(super) fn path(&self, ino: u64) -> Result<PathBuf, Errno> {
        self.nodes.path(ino).ok_or(Errno::ENOENT)
    }

    pub(super) fn child_path(&self, parent: u64, name: &OsStr) -> Result<PathBuf, Errno> {
        check_name(name)?;
        Ok(self.path(parent)?.join(name))
    }

    pub(super) fn lstat(&mut self, path: &Path) -> Result<Metadata, Errno> {
        self.guest()?.lstat(path).map_err(|e| errno(&e))
    }

    /// Whether `path` is where a filesystem of the guest is mounted (it cannot be
    /// removed or moved, as on a real system).
    pub(super) fn is_mount_point(&mut self, path: &Path) -> Result<bool, Errno> {
        Ok(self.guest()?.mounts().iter().any(|m| m.mountpoint == path))
    }

    /// Owner and mode of a new object in directory `parent_path`: the caller's ids, or
    /// the directory's group when it is set-gid (directories inherit the bit).
    pub(super) fn new_node(
        &mut self,
        req: &Request,
        parent_path: &Path,
        mode: u32,
        is_dir: bool,
    ) -> Result<NewNode, Errno> {
        let dir = self.lstat(parent_path)?;
        let mut node = NewNode {
            mode: mode & 0o7777,
            uid: req.uid(),
            gid: req.gid(),
        };
        if dir.mode & 0o2000 != 0 {
            node.gid = dir.gid;
            if is_dir {
                node.mode |= 0o2000;
            }
        }
        Ok(node)
    }

    /// Reply data for a name that now exists: its attributes and inode (one lookup).
    pub(super) fn entry(
        &mut self,
        parent: u64,
        name: &OsStr,
        path: &Path,
    ) -> Result<FileAttr, Errno> {
        let meta = self.lstat(path)?;
        let ino = self.nodes.looked_up(parent, name);
        Ok(self.shown(ino, &meta))
    }

    pub(super) fn lookup(&mut self, parent: u64, name: &OsStr) -> Result<FileAttr, Errno> {
        let path = self.child_path(parent, name)?;
        self.entry(parent, name, &path)
    }

    pub(super) fn getattr(&mut self, ino: u64) -> Result<FileAttr, Errno> {
        let path = self.path(ino)?;
        let meta = self.lstat(&path)?;
        Ok(self.shown(ino, &meta))
    }

    /// The attributes the kernel sees. A link's size is that of the text the view shows
    /// for it, since some tools read exactly `st_size` bytes of a link.
    fn shown(&mut self, ino: u64, meta: &Metadata) -> FileAttr {
        let mut a = attr(ino, meta);
        if meta.is_symlink() {
            if let Ok(text) = self.readlink(ino) {
                a.size = text.as_os_str().len() as u64;
            }
        }
        a
    }

    /// The text the view shows for link `ino`: where it leads inside the guest, relative
    /// to its directory ([`confine`]), never the guest's own text.
    pub(super) fn readlink(&mut self, ino: u64) -> Result<PathBuf, Errno> {
        let path = self.path(ino)?;
        let mut dir = self.nodes.names(ino).ok_or(Errno::ENOENT)?;
        dir.pop();
        let guest = self.guest()?;
        let text = guest.read_link(&path).map_err(|e| errno(&e))?;
        Ok(confine::confined_target(guest, &dir, &text))
    }

    pub(super) fn setattr(
        &mut self,
        ino: u64,
        change: SetAttr,
        size: Option<u64>,
    ) -> Result<FileAttr, Errno> {
        let path = self.path(ino)?;
        let guest = self.guest()?;
        if change != SetAttr::default() {
            guest.set_attr(&path, change).map_err(|e| errno(&e))?;
        }
        if let Some(size) = size {
            guest.truncate(&path, size).map_err(|e| errno(&e))?;
        }
        self.getattr(ino)
    }

    pub(super) fn create(
        &mut self,
        req: &Request,
        parent: u64,
        name: &OsStr,
        mode: u32,
        flags: i32,
    ) -> Result<FileAttr, Errno> {
        let path = self.child_path(parent, name)?;
        let exists = match self.lstat(&path) {
            Ok(meta) => Some(meta),
            Err(e) if e == Errno::ENOENT => None,
            Err(e) => return Err(e),
        };
        match exists {
            None => {
                let parent_path = self.path(parent)?;
                let node = self.new_node(req, &parent_path, mode, false)?;
                self.guest()?
                    .create_file(&path, node)
                    .map_err(|e| errno(&e))?;
            }
            // The kernel may skip the lookup and ask to create a name that exists:
            // then this is a plain open (or fails with O_EXCL), as open(2) does.
            Some(_) if flags & rustix::fs::OFlags::EXCL.bits() as i32 != 0 => {
                return Err(Errno::EEXIST)
            }
            Some(meta) if meta.is_dir() => return Err(Errno::EISDIR),
            Some(meta) => {
                if meta.is_file() && flags & rustix::fs::OFlags::TRUNC.bits() as i32 != 0 {
                    self.guest()?.truncate(&path, 0).map_err(|e| errno(&e))?;
                }
            }
        }
        self.entry(parent, name, &path)
    }

    pub(super) fn mkdir(
        &mut self,
        req: &Request,
        parent: u64,
        name: &OsStr,
        mode: u32,
    ) -> Result<FileAttr, Errno> {
        let path = self.child_path(parent, name)?;
        let parent_path = self.path(parent)?;
        let node = self.new_node(req, &parent_path, mode, true)?;
        self.guest()?.mkdir(&path, node).map_err(|e| errno(&e))?;
        self.entry(parent, name, &path)
    }

    pub(super) fn symlink(
        &mut self,
        req: &Request,
        parent: u64,
        name: &OsStr,
        target: &Path,
    ) -> Result<FileAttr, Errno> {
        let path = self.child_path(parent, name)?;
        let parent_path = self.path(parent)?;
        let node = self.new_node(req, &parent_path, 0o777, false)?;
        self.guest()?
            .symlink(target.as_os_str(), &path, node)
            .map_err(|e| errno(&e))?;
        self.entry(parent, name, &path)
    }

    pub(super) fn link(&mut self, ino: u64, parent: u64, name: &OsStr) -> Result<FileAttr, Errno> {
        let existing = self.path(ino)?;
        let path = self.child_path(parent, name)?;
        self.guest()?
            .hard_link(&existing, &path)
            .map_err(|e| errno(&e))?;
        self.entry(parent, name, &path)
    }

    pub(super) fn remove(&mut self, parent: u64, name: &OsStr, dir: bool) -> Result<(), Errno> {
        let path = self.child_path(parent, name)?;
        if self.is_mount_point(&path)? {
            return Err(Errno::EBUSY);
        }
        let guest = self.guest()?;
        if dir {
            guest.rmdir(&path)
        } else {
            guest.unlink(&path)
        }
        .map_err(|e| errno(&e))?;
        self.nodes.remove(parent, name);
        Ok(())
    }

    pub(super) fn rename(
        &mut self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        flags: RenameFlags,
    ) -> Result<(), Errno> {
        let from = self.child_path(parent, name)?;
        let to = self.child_path(new_parent, new_name)?;
        if from == to {
            return Ok(());
        }
        if flags.intersects(RenameFlags::RENAME_EXCHANGE | RenameFlags::RENAME_WHITEOUT) {
            return Err(Errno::EINVAL);
        }
        if self.is_mount_point(&from)? || self.is_mount_point(&to)? {
            return Err(Errno::EBUSY);
        }
        let guest = self.guest()?;
        if flags.contains(RenameFlags::RENAME_NOREPLACE) && guest.lexists(&to) {
            return Err(Errno::EEXIST);
        }
        guest.rename(&from, &to).map_err(|e| errno(&e))?;
        self.nodes.rename(parent, name, new_parent, new_name);
        Ok(())
    }

    pub(super) fn open(&mut self, ino: u64, flags: OpenFlags) -> Result<(), Errno> {
        let path = self.path(ino)?;
        let guest = self.guest()?;
        if flags.acc_mode() != fuser::OpenAccMode::O_RDONLY
            && !guest.is_writable(&path).map_err(|e| errno(&e))?
        {
            return Err(Errno::EROFS);
        }
        Ok(())
    }

    pub(super) fn read(&mut self, ino: u64, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        let path = self.path(ino)?;
        let guest = self.guest()?;
        let mut buf = vec![0u8; size as usize];
        let mut done = 0;
        while done < buf.len() {
            let n = guest
                .read_at(&path, offset + done as u64, &mut buf[done..])
                .map_err(|e| errno(&e))?;
            if n == 0 {
                break;
            }
            done += n;
        }
        buf.truncate(done);
        Ok(buf)
    }

    pub(super) fn write(&mut self, ino: u64, offset: u64, data: &[u8]) -> Result<u32, Errno> {
        let path = self.path(ino)?;
        self.guest()?
            .write_at(&path, offset, data)
            .map_err(|e| errno(&e))?;
        u32::try_from(data.len()).map_err(|_| Errno::EINVAL)
    }

    pub(super) fn opendir(&mut self, ino: u64) -> Result<u64, Errno> {
        let path = self.path(ino)?;
        let names = self.guest()?.read_dir(&path).map_err(|e| errno(&e))?;
        let mut entries = Vec::with_capacity(names.len() + 2);
        entries.push((ino, fuser::FileType::Directory, OsString::from(".")));
        entries.push((
            self.nodes.parent(ino),
            fuser::FileType::Directory,
            OsString::from(".."),
        ));
        for (name, t) in names {
            // A damaged directory may hold `..` or a name with a slash: such an entry
            // could never be looked up, and must not make a node whose path means
            // something else.
            if check_name(&name).is_err() {
                continue;
            }
            let child = self.nodes.child(ino, &name);
            entries.push((child, kind(t), name));
        }
        let fh = self.next_fh;
        self.next_fh += 1;
        self.dirs.insert(fh, entries);
        Ok(fh)
    }
}
