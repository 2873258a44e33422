//! The guest tree: filesystems mounted at guest paths, addressed by guest paths.
//!
//! Every path is a *guest* path, taken relative to the guest root whether or not it
//! starts with `/`. Resolution is done here, one component at a time: `..` at the root
//! stays at the root, an absolute symlink target starts again at the guest root, and a
//! relative one at the directory holding the link. Nothing here ever touches a host path.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::backend::Filesystem;
use crate::error::{Error, Result};
use crate::node::{FileType, Metadata, NewNode, NodeId, SetAttr};

/// How many symlinks one resolution may follow, as Linux allows.
const MAX_SYMLINKS: usize = 40;

/// Chunk size for reading and scrubbing file data.
const CHUNK: usize = 1 << 20;

/// The largest file [`GuestFs::read`] loads whole. Everything read whole is configuration
/// (fstab, passwd, os-release, dpkg status ...); a guest file claiming more is hostile or
/// corrupt, and loading it could exhaust the host's memory.
pub const MAX_READ: u64 = 64 << 20;

/// How deep a recursive walk or removal may descend below the guest root. Deeper than
/// any real tree (a path this deep is longer than `PATH_MAX`); a directory entry
/// pointing back to an ancestor on a filesystem whose ids cannot show it (FAT) stops here
/// instead of exhausting the stack or the memory.
pub const MAX_DEPTH: usize = 1024;

/// Where a filesystem is mounted and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// The guest path it is mounted at (`/`, `/boot`, `/boot/efi` ...).
    pub mountpoint: PathBuf,
    /// Where it came from, for messages (for example `partition 1` or a host path).
    pub source: String,
}

/// One entry of a recursive walk.
#[derive(Debug, Clone)]
pub struct WalkEntry {
    /// The entry's guest path (absolute).
    pub path: PathBuf,
    pub metadata: Metadata,
}

/// Several filesystems mounted into one guest tree.
pub struct GuestFs {
    mounts: Vec<Mount>,
}

struct Mount {
    info: MountInfo,
    /// The mount point as normalised components (empty for `/`).
    at: Vec<OsString>,
    fs: Box<dyn Filesystem>,
}

/// A node in a particular mounted filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Loc {
    mount: usize,
    node: NodeId,
}

/// The result of resolving a path: the object and the chain of directories to it.
struct Resolved {
    /// The components of the canonical guest path.
    names: Vec<OsString>,
    /// `locs[i]` is the location of the directory holding `names[i]`; `locs[len]` is the
    /// object itself. So `locs[0]` is the guest root.
    locs: Vec<Loc>,
}

impl Resolved {
    fn target(&self) -> Loc {
        *self.locs.last().expect("root is always present")
    }
    fn parent(&self) -> Option<Loc> {
        let n = self.locs.len();
        (n >= 2).then(|| self.locs[n - 2])
    }
    fn path(&self) -> PathBuf {
        to_path(&self.names)
    }
}

/// Guards a recursive descent against directory loops: a corrupt filesystem can hold a
/// directory entry pointing to an ancestor, and a host tree a bind mount of one.
#[derive(Default)]
struct LoopGuard {
    /// Every directory entered so far, with the guest path it was first reached at.
    seen: HashMap<Loc, PathBuf>,
}

impl LoopGuard {
    /// Note that the walk enters directory `r`; an error if it was entered before or lies
    /// deeper than [`MAX_DEPTH`].
    fn enter(&mut self, r: &Resolved) -> Result<()> {
        let path = r.path();
        if r.names.len() > MAX_DEPTH {
            return Err(Error::Corrupt {
                path,
                msg: format!("directories nested more than {MAX_DEPTH} deep (a directory loop?)"),
            });
        }
        if let Some(first) = self.seen.get(&r.target()) {
            return Err(Error::Corrupt {
                msg: format!("directory loop: the same directory as {}", first.display()),
                path,
            });
        }
        self.seen.insert(r.target(), path);
        Ok(())
    }
}

fn to_path(names: &[OsString]) -> PathBuf {
    let mut p = PathBuf::from("/");
    for n in names {
        p.push(n);
    }
    p
}

/// The components of a guest path, keeping `..` for the resolver.
fn components(path: &Path) -> Result<Vec<OsString>> {
    if path.as_os_str().as_bytes().contains(&0) {
        return Err(Error::InvalidPath(path.to_path_buf()));
    }
    Ok(path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect())
}

impl GuestFs {
    /// A tree whose root is `root`.
    pub fn new(root: Box<dyn Filesystem>, source: impl Into<String>) -> Self {
        GuestFs {
            mounts: vec![Mount {
                info: MountInfo {
                    mountpoint: PathBuf::from("/"),
                    source: source.into(),
                },
                at: Vec::new(),
                fs: root,
            }],
        }
    }

    /// Mount `fs` at guest path `at`, which must be an existing directory in the tree.
    /// The mount point is resolved first (symlinks followed inside the guest), so a later
    /// lookup of any path leading there finds the mounted filesystem.
    pub fn mount(
        &mut self,
        at: &Path,
        fs: Box<dyn Filesystem>,
        source: impl Into<String>,
    ) -> Result<()> {
        let r = self.resolve(at, true)?;
        let meta = self.meta(r.target()).map_err(|e| e.at(at))?;
        if !meta.is_dir() {
            return Err(Error::NotADirectory(at.to_path_buf()));
        }
        self.mounts.push(Mount {
            info: MountInfo {
                mountpoint: r.path(),
                source: source.into(),
            },
            at: r.names,
            fs,
        });
        Ok(())
    }

    /// What is mounted where, root first.
    pub fn mounts(&self) -> Vec<MountInfo> {
        self.mounts.iter().map(|m| m.info.clone()).collect()
    }

    /// Whether the filesystem holding `path` can be written.
    pub fn is_writable(&mut self, path: &Path) -> Result<bool> {
        let r = self.resolve(path, true)?;
        Ok(self.mounts[r.target().mount].fs.is_writable())
    }

    /// Attributes of `path`, not following a final symlink.
    pub fn lstat(&mut self, path: &Path) -> Result<Metadata> {
        let r = self.resolve(path, false)?;
        self.meta(r.target()).map_err(|e| e.at(path))
    }

    /// Attributes of `path`, following symlinks (inside the guest).
    pub fn stat(&mut self, path: &Path) -> Result<Metadata> {
        let r = self.resolve(path, true)?;
        self.meta(r.target()).map_err(|e| e.at(path))
    }

    /// Whether `path` exists (following symlinks; a dangling link does not exist).
    pub fn exists(&mut self, path: &Path) -> bool {
        self.stat(path).is_ok()
    }

    /// Whether `path` exists as an object of any kind, a dangling symlink included.
    pub fn lexists(&mut self, path: &Path) -> bool {
        self.lstat(path).is_ok()
    }

    /// Whether `path` is a regular file (following symlinks).
    pub fn is_file(&mut self, path: &Path) -> bool {
        self.stat(path).map(|m| m.is_file()).unwrap_or(false)
    }

    /// Whether `path` is a directory (following symlinks).
    pub fn is_dir(&mut self, path: &Path) -> bool {
        self.stat(path).map(|m| m.is_dir()).unwrap_or(false)
    }

    /// The target of symlink `path`.
    pub fn read_link(&mut self, path: &Path) -> Result<OsString> {
        let r = self.resolve(path, false)?;
        let loc = r.target();
        let meta = self.meta(loc).map_err(|e| e.at(path))?;
        if !meta.is_symlink() {
            return Err(Error::NotASymlink(path.to_path_buf()));
        }
        self.fs(loc).read_link(loc.node).map_err(|e| e.at(path))
    }

    /// The guest path `path` resolves to (all symlinks followed), absolute and normalised.
    pub fn canonicalize(&mut self, path: &Path) -> Result<PathBuf> {
        Ok(self.resolve(path, true)?.path())
    }

    /// Names and types in directory `path` (following symlinks), without `.` and `..`,
    /// sorted by name.
    pub fn read_dir(&mut self, path: &Path) -> Result<Vec<(OsString, FileType)>> {
        let r = self.resolve(path, true)?;
        let entries = self.dir_entries(&r).map_err(|e| e.at(path))?;
        Ok(entries.into_iter().map(|(n, _, t)| (n, t)).collect())
    }

    /// The whole content of file `path` (following symlinks); a file larger than
    /// [`MAX_READ`] is an error naming it.
    pub fn read(&mut self, path: &Path) -> Result<Vec<u8>> {
        let r = self.resolve(path, true)?;
        let loc = r.target();
        let meta = self.meta(loc).map_err(|e| e.at(path))?;
        match meta.file_type {
            FileType::Regular => {}
            FileType::Directory => return Err(Error::IsADirectory(path.to_path_buf())),
            _ => {
                return Err(Error::Unsupported {
                    path: path.to_path_buf(),
                    what: "reading a special file".into(),
                })
            }
        }
        let too_large = |size| Error::TooLarge {
            path: path.to_path_buf(),
            size,
            limit: MAX_READ,
        };
        if meta.size > MAX_READ {
            return Err(too_large(meta.size));
        }
        let mut data = Vec::with_capacity(meta.size as usize);
        let mut buf = vec![0u8; CHUNK.min(meta.size.max(1) as usize)];
        let mut offset = 0u64;
        loop {
            snf_core::cancel::check()?;
            let n = self
                .fs(loc)
                .read_at(loc.node, offset, &mut buf)
                .map_err(|e| e.at(path))?;
            if n == 0 {
                break;
            }
            data.extend_from_slice(&buf[..n]);
            offset += n as u64;
            // A corrupt backend may hand out more than the size it reported.
            if offset > MAX_READ {
                return Err(too_large(offset));
            }
        }
        Ok(data)
    }

    /// The content of `path` as text (invalid UTF-8 replaced).
    pub fn read_to_string(&mut self, path: &Path) -> Result<String> {
        Ok(String::from_utf8_lossy(&self.read(path)?).into_owned())
    }

    /// Replace the content of `path` (following symlinks) with `data`. An existing file
    /// keeps its inode, owner, mode and xattrs; a missing one is created with `attr`.
    pub fn write(&mut self, path: &Path, data: &[u8], attr: NewNode) -> Result<()> {
        let loc = match self.resolve(path, true) {
            Ok(r) => {
                let loc = r.target();
                let meta = self.meta(loc).map_err(|e| e.at(path))?;
                match meta.file_type {
                    FileType::Regular => {}
                    FileType::Directory => return Err(Error::IsADirectory(path.to_path_buf())),
                    _ => {
                        return Err(Error::Unsupported {
                            path: path.to_path_buf(),
                            what: "writing a special file".into(),
                        })
                    }
                }
                self.fs(loc).set_len(loc.node, 0).map_err(|e| e.at(path))?;
                loc
            }
            Err(Error::NotFound(_)) => {
                let (dir, name) = self.resolve_parent(path)?;
                let node = self
                    .fs(dir)
                    .create_file(dir.node, &name, attr)
                    .map_err(|e| e.at(path))?;
                Loc {
                    mount: dir.mount,
                    node,
                }
            }
            Err(e) => return Err(e),
        };
        for (i, chunk) in data.chunks(CHUNK).enumerate() {
            snf_core::cancel::check()?;
            self.fs(loc)
                .write_at(loc.node, (i * CHUNK) as u64, chunk)
                .map_err(|e| e.at(path))?;
        }
        Ok(())
    }

    /// Read up to `buf.len()` bytes of regular file `path` (following symlinks) at
    /// `offset`; returns the count, 0 at or past the end of the file. For partial I/O
    /// (the FUSE view) where [`GuestFs::read`] would load the whole file.
    pub fn read_at(&mut self, path: &Path, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let loc = self.regular_file(path, "reading a special file")?;
        self.fs(loc)
            .read_at(loc.node, offset, buf)
            .map_err(|e| e.at(path))
    }

    /// Write all of `data` into existing regular file `path` (following symlinks) at
    /// `offset`, extending the file if needed; the rest of the file is kept.
    pub fn write_at(&mut self, path: &Path, offset: u64, data: &[u8]) -> Result<()> {
        let loc = self.regular_file(path, "writing a special file")?;
        self.fs(loc)
            .write_at(loc.node, offset, data)
            .map_err(|e| e.at(path))
    }

    /// The location of regular file `path` (following symlinks); `what` names the
    /// refused operation for other special files.
    fn regular_file(&mut self, path: &Path, what: &str) -> Result<Loc> {
        let loc = self.resolve(path, true)?.target();
        let meta = self.meta(loc).map_err(|e| e.at(path))?;
        match meta.file_type {
            FileType::Regular => Ok(loc),
            FileType::Directory => Err(Error::IsADirectory(path.to_path_buf())),
            _ => Err(Error::Unsupported {
                path: path.to_path_buf(),
                what: what.into(),
            }),
        }
    }

    /// Create the empty regular file `path`; it must not exist (as `O_CREAT|O_EXCL`).
    pub fn create_file(&mut self, path: &Path, attr: NewNode) -> Result<()> {
        let (dir, name) = self.resolve_parent(path)?;
        if self.lookup(dir, &name).map_err(|e| e.at(path))?.is_some() {
            return Err(Error::AlreadyExists(path.to_path_buf()));
        }
        self.fs(dir)
            .create_file(dir.node, &name, attr)
            .map(|_| ())
            .map_err(|e| e.at(path))
    }

    /// Make `new` another name (a hard link) of the existing non-directory `existing`
    /// (a final symlink is linked, not followed). Both must be on the same filesystem.
    pub fn hard_link(&mut self, existing: &Path, new: &Path) -> Result<()> {
        let src = self.resolve(existing, false)?;
        let loc = src.target();
        if self.meta(loc).map_err(|e| e.at(existing))?.is_dir() {
            return Err(Error::IsADirectory(existing.to_path_buf()));
        }
        let (dir, name) = self.resolve_parent(new)?;
        if self.lookup(dir, &name).map_err(|e| e.at(new))?.is_some() {
            return Err(Error::AlreadyExists(new.to_path_buf()));
        }
        if dir.mount != loc.mount {
            return Err(Error::CrossDevice(new.to_path_buf()));
        }
        self.fs(dir)
            .hard_link(loc.node, dir.node, &name)
            .map_err(|e| e.at(new))
    }

    /// Overwrite the data of regular file `path` in place with zeros, so that it cannot
    /// be recovered from the disk once the filesystem is flushed; the file keeps its
    /// size. Only ranges that hold non-zero data are written, so holes of sparse files
    /// stay holes. A final symlink is not followed (scrubbing must never reach a file
    /// outside the one named).
    pub fn scrub_data(&mut self, path: &Path) -> Result<()> {
        let r = self.resolve(path, false)?;
        let loc = r.target();
        let meta = self.meta(loc).map_err(|e| e.at(path))?;
        if !meta.is_file() {
            return Err(Error::Unsupported {
                path: path.to_path_buf(),
                what: "scrubbing anything but a regular file".into(),
            });
        }
        let mut buf = vec![0u8; CHUNK.min(meta.size.max(1) as usize)];
        let zeros = vec![0u8; buf.len()];
        let mut offset = 0u64;
        while offset < meta.size {
            snf_core::cancel::check()?;
            let n = self
                .fs(loc)
                .read_at(loc.node, offset, &mut buf)
                .map_err(|e| e.at(path))?;
            if n == 0 {
                break;
            }
            if buf[..n].iter().any(|&b| b != 0) {
                self.fs(loc)
                    .write_at(loc.node, offset, &zeros[..n])
                    .map_err(|e| e.at(path))?;
            }
            offset += n as u64;
        }
        // No flush here: the zeros reach the disk with the filesystem's next flush, before
        // any later write could reuse the blocks, and a flush per file costs fsyncs.
        Ok(())
    }

    /// Truncate or extend regular file `path` (following symlinks) to `size` bytes.
    pub fn truncate(&mut self, path: &Path, size: u64) -> Result<()> {
        let r = self.resolve(path, true)?;
        let loc = r.target();
        let meta = self.meta(loc).map_err(|e| e.at(path))?;
        if meta.is_dir() {
            return Err(Error::IsADirectory(path.to_path_buf()));
        }
        if !meta.is_file() {
            return Err(Error::Unsupported {
                path: path.to_path_buf(),
                what: "truncating a special file".into(),
            });
        }
        self.fs(loc).set_len(loc.node, size).map_err(|e| e.at(path))
    }

    /// Create directory `path`; its parent must exist.
    pub fn mkdir(&mut self, path: &Path, attr: NewNode) -> Result<()> {
        let (dir, name) = self.resolve_parent(path)?;
        if self.lookup(dir, &name).map_err(|e| e.at(path))?.is_some() {
            return Err(Error::AlreadyExists(path.to_path_buf()));
        }
        self.fs(dir)
            .mkdir(dir.node, &name, attr)
            .map(|_| ())
            .map_err(|e| e.at(path))
    }

    /// Create directory `path` and any missing parents (existing ones are fine).
    pub fn mkdir_all(&mut self, path: &Path, attr: NewNode) -> Result<()> {
        let names = components(path)?;
        let mut prefix = PathBuf::from("/");
        for name in names {
            prefix.push(&name);
            match self.stat(&prefix) {
                Ok(m) if m.is_dir() => continue,
                Ok(_) => return Err(Error::NotADirectory(prefix)),
                Err(Error::NotFound(_)) => self.mkdir(&prefix, attr)?,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Create symlink `path` pointing to `target`.
    pub fn symlink(&mut self, target: &OsStr, path: &Path, attr: NewNode) -> Result<()> {
        let (dir, name) = self.resolve_parent(path)?;
        if self.lookup(dir, &name).map_err(|e| e.at(path))?.is_some() {
            return Err(Error::AlreadyExists(path.to_path_buf()));
        }
        self.fs(dir)
            .symlink(dir.node, &name, target, attr)
            .map(|_| ())
            .map_err(|e| e.at(path))
    }

    /// Remove the non-directory `path` (a final symlink is removed, not followed).
    pub fn unlink(&mut self, path: &Path) -> Result<()> {
        let (dir, name) = self.resolve_parent(path)?;
        let node = self
            .lookup(dir, &name)
            .map_err(|e| e.at(path))?
            .ok_or_else(|| Error::NotFound(path.to_path_buf()))?;
        let meta = self.meta(node).map_err(|e| e.at(path))?;
        if meta.is_dir() {
            return Err(Error::IsADirectory(path.to_path_buf()));
        }
        self.fs(dir).unlink(dir.node, &name).map_err(|e| e.at(path))
    }

    /// Remove the empty directory `path`.
    pub fn rmdir(&mut self, path: &Path) -> Result<()> {
        let r = self.resolve(path, false)?;
        let (dir, node) = self.own_entry(&r, path)?;
        let meta = self.meta(node).map_err(|e| e.at(path))?;
        if !meta.is_dir() {
            return Err(Error::NotADirectory(path.to_path_buf()));
        }
        let name = r.names.last().expect("own_entry checked").clone();
        self.fs(dir).rmdir(dir.node, &name).map_err(|e| e.at(path))
    }

    /// The parent and the object of `r`, refusing the root and mount points, which
    /// belong to no directory of their own filesystem.
    fn own_entry(&self, r: &Resolved, path: &Path) -> Result<(Loc, Loc)> {
        let node = r.target();
        match r.parent() {
            None => Err(Error::InvalidPath(path.to_path_buf())),
            Some(dir) if dir.mount != node.mount => Err(Error::Unsupported {
                path: path.to_path_buf(),
                what: "removing, moving or replacing a mount point".into(),
            }),
            Some(dir) => Ok((dir, node)),
        }
    }

    /// Remove `path` and, for a directory, everything below it (`rm -rf`): symlinks are
    /// removed, never followed; a mount point inside is emptied but kept. A missing
    /// `path` is not an error.
    pub fn remove_all(&mut self, path: &Path) -> Result<()> {
        let r = match self.resolve(path, false) {
            Ok(r) => r,
            Err(Error::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        self.remove_resolved(r)
    }

    /// Removes children before their directory, iteratively (a deep tree cannot
    /// overflow the stack), stopping at a directory loop.
    fn remove_resolved(&mut self, r: Resolved) -> Result<()> {
        let path = r.path();
        if !self.meta(r.target()).map_err(|e| e.at(&path))?.is_dir() {
            return self.remove_entry(&r, false);
        }
        let mut guard = LoopGuard::default();
        guard.enter(&r)?;
        let names = self.entry_names(&r)?;
        let mut stack = vec![(r, names)];
        while let Some((dir, pending)) = stack.last_mut() {
            let Some(name) = pending.pop() else {
                let (dir, _) = stack.pop().expect("the loop saw a frame");
                self.remove_entry(&dir, true)?;
                continue;
            };
            snf_core::cancel::check()?;
            let child_path = dir.path().join(&name);
            let child = self.child(dir, &name).map_err(|e| e.at(&child_path))?;
            let meta = self.meta(child.target()).map_err(|e| e.at(&child_path))?;
            if meta.is_dir() {
                guard.enter(&child)?;
                let names = self.entry_names(&child)?;
                stack.push((child, names));
            } else {
                self.remove_entry(&child, false)?;
            }
        }
        Ok(())
    }

    /// Remove the (already emptied, if a directory) object `r` from its parent; the
    /// guest root and mount points, which no directory of their filesystem holds, stay.
    fn remove_entry(&mut self, r: &Resolved, is_dir: bool) -> Result<()> {
        let loc = r.target();
        let Some(parent) = r.parent() else {
            return Ok(());
        };
        if parent.mount != loc.mount {
            return Ok(());
        }
        let name = r.names.last().expect("non-root has a name");
        let fs = self.fs(parent);
        if is_dir {
            fs.rmdir(parent.node, name)
        } else {
            fs.unlink(parent.node, name)
        }
        .map_err(|e| e.at(r.path()))
    }

    /// Rename `from` to `to` (same filesystem only). Neither final component is followed.
    pub fn rename(&mut self, from: &Path, to: &Path) -> Result<()> {
        let src = self.resolve(from, false)?;
        let (from_dir, _) = self.own_entry(&src, from)?;
        let from_name = src.names.last().expect("own_entry checked").clone();
        let (to_dir, to_name) = match self.resolve(to, false) {
            Ok(dst) => {
                let (dir, _) = self.own_entry(&dst, to)?;
                (dir, dst.names.last().expect("own_entry checked").clone())
            }
            Err(Error::NotFound(_)) => self.resolve_parent(to)?,
            Err(e) => return Err(e),
        };
        if from_dir.mount != to_dir.mount {
            return Err(Error::CrossDevice(to.to_path_buf()));
        }
        self.fs(from_dir)
            .rename(from_dir.node, &from_name, to_dir.node, &to_name)
            .map_err(|e| e.at(from))
    }

    /// Change mode, owner or times of `path` (not following a final symlink).
    pub fn set_attr(&mut self, path: &Path, attr: SetAttr) -> Result<()> {
        let r = self.resolve(path, false)?;
        let loc = r.target();
        self.fs(loc)
            .set_attr(loc.node, attr)
            .map_err(|e| e.at(path))
    }

    /// Every object below `path` (not `path` itself), depth first, parents before
    /// children, entries of a directory sorted by name. Symlinks are reported, not
    /// followed; the walk stays inside the guest and descends into mounted filesystems.
    ///
    /// A directory loop (an entry pointing to an ancestor) or a tree deeper than
    /// [`MAX_DEPTH`] is an error naming the path where it shows.
    pub fn walk(&mut self, path: &Path) -> Result<Vec<WalkEntry>> {
        let r = self.resolve(path, true)?;
        let mut out = Vec::new();
        if !self.meta(r.target()).map_err(|e| e.at(path))?.is_dir() {
            return Ok(out);
        }
        let mut guard = LoopGuard::default();
        guard.enter(&r)?;
        // One frame per directory being listed: the directory and its names still to
        // visit, last name first. Iterative, so a deep tree cannot overflow the stack.
        let mut stack = Vec::new();
        let names = self.entry_names(&r)?;
        stack.push((r, names));
        while let Some((dir, pending)) = stack.last_mut() {
            let Some(name) = pending.pop() else {
                stack.pop();
                continue;
            };
            snf_core::cancel::check()?;
            let child_path = dir.path().join(&name);
            let child = self.child(dir, &name).map_err(|e| e.at(&child_path))?;
            let metadata = self.meta(child.target()).map_err(|e| e.at(&child_path))?;
            let is_dir = metadata.is_dir();
            out.push(WalkEntry {
                path: child_path,
                metadata,
            });
            if is_dir {
                guard.enter(&child)?;
                let names = self.entry_names(&child)?;
                stack.push((child, names));
            }
        }
        Ok(out)
    }

    /// The names in directory `r`, last first (for popping in order).
    fn entry_names(&mut self, r: &Resolved) -> Result<Vec<OsString>> {
        let mut names: Vec<OsString> = self
            .dir_entries(r)
            .map_err(|e| e.at(r.path()))?
            .into_iter()
            .map(|(n, _, _)| n)
            .collect();
        names.reverse();
        Ok(names)
    }

    /// Flush every mounted filesystem.
    pub fn sync(&mut self) -> Result<()> {
        for m in &mut self.mounts {
            m.fs.sync().map_err(|e| e.at(&m.info.mountpoint))?;
        }
        Ok(())
    }

    /// Close every mounted filesystem, the last mounted first, and report the first
    /// error of their final writes (dropping the tree closes them too, losing errors).
    pub fn close(self) -> Result<()> {
        let mut result = Ok(());
        for m in self.mounts.into_iter().rev() {
            let closed = m.fs.close().map_err(|e| e.at(&m.info.mountpoint));
            if result.is_ok() {
                result = closed;
            }
        }
        result
    }

    /// Unmount everything (after syncing) and give the filesystems back, root first.
    pub fn into_filesystems(mut self) -> Result<Vec<(MountInfo, Box<dyn Filesystem>)>> {
        self.sync()?;
        Ok(self.mounts.into_iter().map(|m| (m.info, m.fs)).collect())
    }

    // ---- resolution -------------------------------------------------------------

    fn fs(&mut self, loc: Loc) -> &mut dyn Filesystem {
        self.mounts[loc.mount].fs.as_mut()
    }

    fn meta(&mut self, loc: Loc) -> Result<Metadata> {
        self.fs(loc).metadata(loc.node)
    }

    /// The mount whose mount point is exactly `names`, latest mount winning.
    fn mount_at(&self, names: &[OsString]) -> Option<usize> {
        self.mounts
            .iter()
            .enumerate()
            .rev()
            .find(|(i, m)| *i != 0 && m.at == names)
            .map(|(i, _)| i)
    }

    fn root_loc(&self) -> Loc {
        Loc {
            mount: 0,
            node: self.mounts[0].fs.root(),
        }
    }

    /// Look `name` up in directory `dir`, crossing into a filesystem mounted there.
    /// Needs the full path of `dir` to recognise mount points, so it is only used where
    /// that is known; see [`GuestFs::child`].
    fn lookup(&mut self, dir: Loc, name: &OsStr) -> Result<Option<Loc>> {
        Ok(self.fs(dir).lookup(dir.node, name)?.map(|node| Loc {
            mount: dir.mount,
            node,
        }))
    }

    /// The resolved child `name` of resolved directory `r` (no symlink following).
    fn child(&mut self, r: &Resolved, name: &OsStr) -> Result<Resolved> {
        let mut names = r.names.clone();
        names.push(name.to_os_string());
        let mut locs = r.locs.clone();
        let loc = match self.mount_at(&names) {
            Some(m) => Loc {
                mount: m,
                node: self.mounts[m].fs.root(),
            },
            None => self
                .lookup(r.target(), name)?
                .ok_or_else(|| Error::NotFound(to_path(&names)))?,
        };
        locs.push(loc);
        Ok(Resolved { names, locs })
    }

    /// Entries of the directory `r`, with mount points showing the mounted root.
    fn dir_entries(&mut self, r: &Resolved) -> Result<Vec<(OsString, Loc, FileType)>> {
        let dir = r.target();
        let mut entries: Vec<_> = self
            .fs(dir)
            .read_dir(dir.node)?
            .into_iter()
            .map(|e| {
                (
                    e.name,
                    Loc {
                        mount: dir.mount,
                        node: e.node,
                    },
                    e.file_type,
                )
            })
            .collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut names = r.names.clone();
        for entry in &mut entries {
            names.push(entry.0.clone());
            if let Some(m) = self.mount_at(&names) {
                entry.1 = Loc {
                    mount: m,
                    node: self.mounts[m].fs.root(),
                };
                entry.2 = FileType::Directory;
            }
            names.pop();
        }
        Ok(entries)
    }

    /// Resolve `path` inside the guest. With `follow_last`, a final symlink is followed
    /// too. Errors name `path`.
    fn resolve(&mut self, path: &Path, follow_last: bool) -> Result<Resolved> {
        let mut pending: Vec<OsString> = components(path)?;
        pending.reverse(); // pop() from the end yields the next component
        let mut r = Resolved {
            names: Vec::new(),
            locs: vec![self.root_loc()],
        };
        let mut followed = 0usize;
        while let Some(name) = pending.pop() {
            if name == ".." {
                if !r.names.is_empty() {
                    r.names.pop();
                    r.locs.pop();
                }
                continue;
            }
            let dir = r.target();
            let dir_meta = self.meta(dir).map_err(|e| e.at(path))?;
            if !dir_meta.is_dir() {
                return Err(Error::NotADirectory(path.to_path_buf()));
            }
            let child = match self.child(&r, &name) {
                Ok(c) => c,
                Err(Error::NotFound(_)) => return Err(Error::NotFound(path.to_path_buf())),
                Err(e) => return Err(e.at(path)),
            };
            let loc = child.target();
            let is_last = pending.is_empty();
            if (follow_last || !is_last) && loc.mount == dir.mount {
                let meta = self.meta(loc).map_err(|e| e.at(path))?;
                if meta.is_symlink() {
                    followed += 1;
                    if followed > MAX_SYMLINKS {
                        return Err(Error::TooManySymlinks(path.to_path_buf()));
                    }
                    let target = self.fs(loc).read_link(loc.node).map_err(|e| e.at(path))?;
                    let target = PathBuf::from(target);
                    if target.as_os_str().is_empty() {
                        return Err(Error::NotFound(path.to_path_buf()));
                    }
                    if target.has_root() {
                        r.names.clear();
                        r.locs.truncate(1);
                    }
                    let mut more = components(&target)?;
                    more.reverse();
                    pending.extend(more);
                    continue;
                }
            }
            r = child;
        }
        Ok(r)
    }

    /// The directory that holds `path`'s final component (followed), and that component.
    /// A path ending in `.` or `..` (or naming the root) has no single final component:
    /// it is resolved fully and its canonical parent and name are used.
    fn resolve_parent(&mut self, path: &Path) -> Result<(Loc, OsString)> {
        let mut names = components(path)?;
        match names.last() {
            Some(last) if last != ".." => {
                let last = names.pop().expect("checked non-empty");
                let dir_path = to_path(&names);
                let r = self.resolve(&dir_path, true).map_err(|e| e.at(path))?;
                let meta = self.meta(r.target()).map_err(|e| e.at(path))?;
                if !meta.is_dir() {
                    return Err(Error::NotADirectory(path.to_path_buf()));
                }
                Ok((r.target(), last))
            }
            _ => {
                let r = self.resolve(path, true)?;
                match (r.parent(), r.names.last()) {
                    (Some(parent), Some(name)) => Ok((parent, name.clone())),
                    _ => Err(Error::InvalidPath(path.to_path_buf())),
                }
            }
        }
    }
}
