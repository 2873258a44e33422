//! The guest tree: filesystems mounted at guest paths, addressed by guest paths.
//!
//! Every path is a *guest* path, taken relative to the guest root whether or not it
//! starts with `/`. Resolution is done here, one component at a time: `..` at the root
//! stays at the root, an absolute symlink target starts again at the guest root, and a
//! relative one at the directory holding the link. Nothing here ever touches a host path.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use crate::backend::Filesystem;
use crate::error::Result;
use crate::node::{FileType, Metadata, NewNode, SetAttr};

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
    fs: Box<dyn Filesystem>,
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
                fs: root,
            }],
        }
    }

    /// Mount `fs` at guest path `at`, which must be an existing directory in the tree.
    pub fn mount(&mut self, at: &Path, fs: Box<dyn Filesystem>, source: impl Into<String>) -> Result<()> {
        let _ = (at, fs, source.into());
        todo!("GuestFs::mount")
    }

    /// What is mounted where, root first.
    pub fn mounts(&self) -> Vec<MountInfo> {
        self.mounts.iter().map(|m| m.info.clone()).collect()
    }

    /// Whether the filesystem holding `path` can be written.
    pub fn is_writable(&mut self, path: &Path) -> Result<bool> {
        let _ = path;
        todo!("GuestFs::is_writable")
    }

    /// Attributes of `path`, not following a final symlink.
    pub fn lstat(&mut self, path: &Path) -> Result<Metadata> {
        let _ = path;
        todo!("GuestFs::lstat")
    }

    /// Attributes of `path`, following symlinks (inside the guest).
    pub fn stat(&mut self, path: &Path) -> Result<Metadata> {
        let _ = path;
        todo!("GuestFs::stat")
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
        let _ = path;
        todo!("GuestFs::read_link")
    }

    /// The guest path `path` resolves to (all symlinks followed), absolute and normalised.
    pub fn canonicalize(&mut self, path: &Path) -> Result<PathBuf> {
        let _ = path;
        todo!("GuestFs::canonicalize")
    }

    /// Names and types in directory `path` (following symlinks), without `.` and `..`,
    /// sorted by name.
    pub fn read_dir(&mut self, path: &Path) -> Result<Vec<(OsString, FileType)>> {
        let _ = path;
        todo!("GuestFs::read_dir")
    }

    /// The whole content of file `path` (following symlinks).
    pub fn read(&mut self, path: &Path) -> Result<Vec<u8>> {
        let _ = path;
        todo!("GuestFs::read")
    }

    /// The content of `path` as text (invalid UTF-8 replaced).
    pub fn read_to_string(&mut self, path: &Path) -> Result<String> {
        Ok(String::from_utf8_lossy(&self.read(path)?).into_owned())
    }

    /// Replace the content of `path` (following symlinks) with `data`. An existing file
    /// keeps its inode, owner, mode and xattrs; a missing one is created with `attr`.
    pub fn write(&mut self, path: &Path, data: &[u8], attr: NewNode) -> Result<()> {
        let _ = (path, data, attr);
        todo!("GuestFs::write")
    }

    /// Overwrite the data of regular file `path` in place (zeros over its whole size, then
    /// synced), so that it cannot be recovered from the disk; the file keeps its size.
    pub fn scrub_data(&mut self, path: &Path) -> Result<()> {
        let _ = path;
        todo!("GuestFs::scrub_data")
    }

    /// Truncate or extend regular file `path` to `size` bytes.
    pub fn truncate(&mut self, path: &Path, size: u64) -> Result<()> {
        let _ = (path, size);
        todo!("GuestFs::truncate")
    }

    /// Create directory `path`; its parent must exist.
    pub fn mkdir(&mut self, path: &Path, attr: NewNode) -> Result<()> {
        let _ = (path, attr);
        todo!("GuestFs::mkdir")
    }

    /// Create directory `path` and any missing parents (existing ones are fine).
    pub fn mkdir_all(&mut self, path: &Path, attr: NewNode) -> Result<()> {
        let _ = (path, attr);
        todo!("GuestFs::mkdir_all")
    }

    /// Create symlink `path` pointing to `target`.
    pub fn symlink(&mut self, target: &OsStr, path: &Path, attr: NewNode) -> Result<()> {
        let _ = (target, path, attr);
        todo!("GuestFs::symlink")
    }

    /// Remove the non-directory `path` (a final symlink is removed, not followed).
    pub fn unlink(&mut self, path: &Path) -> Result<()> {
        let _ = path;
        todo!("GuestFs::unlink")
    }

    /// Remove the empty directory `path`.
    pub fn rmdir(&mut self, path: &Path) -> Result<()> {
        let _ = path;
        todo!("GuestFs::rmdir")
    }

    /// Remove `path` and, for a directory, everything below it (`rm -rf`): symlinks are
    /// removed, never followed; a mount point inside is emptied but kept. A missing
    /// `path` is not an error.
    pub fn remove_all(&mut self, path: &Path) -> Result<()> {
        let _ = path;
        todo!("GuestFs::remove_all")
    }

    /// Rename `from` to `to` (same filesystem only).
    pub fn rename(&mut self, from: &Path, to: &Path) -> Result<()> {
        let _ = (from, to);
        todo!("GuestFs::rename")
    }

    /// Change mode, owner or times of `path` (not following a final symlink).
    pub fn set_attr(&mut self, path: &Path, attr: SetAttr) -> Result<()> {
        let _ = (path, attr);
        todo!("GuestFs::set_attr")
    }

    /// Every object below `path` (not `path` itself), depth first, parents before
    /// children, entries of a directory sorted by name. Symlinks are reported, not
    /// followed; the walk stays inside the guest and descends into mounted filesystems.
    pub fn walk(&mut self, path: &Path) -> Result<Vec<WalkEntry>> {
        let _ = path;
        todo!("GuestFs::walk")
    }

    /// Flush every mounted filesystem.
    pub fn sync(&mut self) -> Result<()> {
        for m in &mut self.mounts {
            m.fs.sync()?;
        }
        Ok(())
    }

    /// Unmount everything (after syncing) and give the filesystems back, root first.
    pub fn into_filesystems(mut self) -> Result<Vec<(MountInfo, Box<dyn Filesystem>)>> {
        self.sync()?;
        Ok(self.mounts.into_iter().map(|m| (m.info, m.fs)).collect())
    }
}
