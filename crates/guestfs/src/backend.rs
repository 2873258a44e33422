//! The interface every filesystem backend implements.

use std::ffi::OsStr;
use std::ffi::OsString;

use crate::error::{Error, Result};
use crate::node::{DirEntry, Metadata, NewNode, NodeId, SetAttr};

/// The kind of filesystem a backend serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FsKind {
    Ext2,
    Ext3,
    Ext4,
    Vfat,
    /// Through libntfs-3g.
    Ntfs,
    /// Through the libguestfs appliance.
    Xfs,
    /// Through the libguestfs appliance.
    Btrfs,
    /// UFS1 ("44bsd", NetBSD and OpenBSD), in-process.
    Ufs1,
    /// UFS2 (FreeBSD), in-process.
    Ufs2,
    /// A directory of the host (tests, host bundling).
    HostDir,
}

impl FsKind {
    /// The name used in messages and in `/etc/fstab`.
    pub fn name(self) -> &'static str {
        match self {
            FsKind::Ext2 => "ext2",
            FsKind::Ext3 => "ext3",
            FsKind::Ext4 => "ext4",
            FsKind::Vfat => "vfat",
            FsKind::Ntfs => "ntfs",
            FsKind::Xfs => "xfs",
            FsKind::Btrfs => "btrfs",
            FsKind::Ufs1 | FsKind::Ufs2 => "ufs",
            FsKind::HostDir => "directory",
        }
    }
}

/// One filesystem, addressed by node ids.
///
/// Names are single path components (never empty, never containing `/`, never `.` or
/// `..`); the guest tree ([`crate::tree`]) does all path handling and symlink
/// resolution. Errors carry no path: the tree adds it. Methods take `&mut self` because
/// backends cache metadata and libext2fs handles are not re-entrant.
///
/// Writes must leave the filesystem consistent after [`Filesystem::sync`]: for ext2/3/4,
/// `e2fsck -fn` finds nothing to fix.
pub trait Filesystem: Send {
    /// What kind of filesystem this is.
    fn kind(&self) -> FsKind;

    /// Whether writes are allowed (opened read-write and the backend can write).
    fn is_writable(&self) -> bool;

    /// The root directory.
    fn root(&self) -> NodeId;

    /// Find `name` in directory `dir`; `Ok(None)` if there is no such entry.
    fn lookup(&mut self, dir: NodeId, name: &OsStr) -> Result<Option<NodeId>>;

    /// Attributes of a node, not following symlinks.
    fn metadata(&mut self, node: NodeId) -> Result<Metadata>;

    /// The entries of directory `dir`, without `.` and `..`, in on-disk order.
    fn read_dir(&mut self, dir: NodeId) -> Result<Vec<DirEntry>>;

    /// The target of symlink `node`.
    fn read_link(&mut self, node: NodeId) -> Result<OsString>;

    /// Read up to `buf.len()` bytes at `offset`; returns the count (0 at end of file).
    /// Holes read as zeros.
    fn read_at(&mut self, node: NodeId, offset: u64, buf: &mut [u8]) -> Result<usize>;

    /// Write all of `data` at `offset`, extending the file if needed.
    fn write_at(&mut self, node: NodeId, offset: u64, data: &[u8]) -> Result<()>;

    /// Truncate or extend (with a hole) regular file `node` to `size` bytes, freeing the
    /// blocks past the new end.
    fn set_len(&mut self, node: NodeId, size: u64) -> Result<()>;

    /// Create an empty regular file `name` in `dir`.
    fn create_file(&mut self, dir: NodeId, name: &OsStr, attr: NewNode) -> Result<NodeId>;

    /// Create directory `name` in `dir`.
    fn mkdir(&mut self, dir: NodeId, name: &OsStr, attr: NewNode) -> Result<NodeId>;

    /// Create symlink `name` in `dir` pointing to `target`.
    fn symlink(
        &mut self,
        dir: NodeId,
        name: &OsStr,
        target: &OsStr,
        attr: NewNode,
    ) -> Result<NodeId>;

    /// Add a hard link `name` in `dir` to the existing non-directory `node`.
    fn hard_link(&mut self, node: NodeId, dir: NodeId, name: &OsStr) -> Result<()> {
        let _ = (node, dir, name);
        Err(Error::Unsupported {
            path: Default::default(),
            what: "hard links".into(),
        })
    }

    /// Remove the non-directory entry `name` from `dir`; when its last link goes, the
    /// inode and all its blocks (and xattr blocks) are returned to the filesystem.
    fn unlink(&mut self, dir: NodeId, name: &OsStr) -> Result<()>;

    /// Remove the empty directory `name` from `dir`.
    fn rmdir(&mut self, dir: NodeId, name: &OsStr) -> Result<()>;

    /// Move entry `from_name` of `from_dir` to `to_name` in `to_dir`, replacing an
    /// existing non-directory (or empty directory) target as `rename(2)` does.
    fn rename(
        &mut self,
        from_dir: NodeId,
        from_name: &OsStr,
        to_dir: NodeId,
        to_name: &OsStr,
    ) -> Result<()>;

    /// Change mode, owner or times.
    fn set_attr(&mut self, node: NodeId, attr: SetAttr) -> Result<()>;

    /// Extended attributes of `node` as (name, value) pairs, names with their namespace
    /// prefix (`user.`, `security.`, `trusted.`, `system.`).
    fn xattrs(&mut self, node: NodeId) -> Result<Vec<(OsString, Vec<u8>)>> {
        let _ = node;
        Ok(Vec::new())
    }

    /// Write everything cached to the underlying storage.
    fn sync(&mut self) -> Result<()>;

    /// Write everything back and close, reporting errors of that final write. Dropping
    /// a backend closes it too, but loses them: writers end with this.
    fn close(mut self: Box<Self>) -> Result<()> {
        self.sync()
    }
}
