//! What a filesystem object looks like through the guest-filesystem interface.

use std::ffi::OsString;

/// A backend's handle for one object (for ext2/3/4: the inode number).
pub type NodeId = u64;

/// The kind of a filesystem object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileType {
    Regular,
    Directory,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
    Unknown,
}

impl FileType {
    /// From the `S_IFMT` bits of a Unix mode (the same on Linux and the BSDs).
    pub fn from_mode(mode: u32) -> FileType {
        match mode & 0o170000 {
            0o100000 => FileType::Regular,
            0o040000 => FileType::Directory,
            0o120000 => FileType::Symlink,
            0o020000 => FileType::CharDevice,
            0o060000 => FileType::BlockDevice,
            0o010000 => FileType::Fifo,
            0o140000 => FileType::Socket,
            _ => FileType::Unknown,
        }
    }
}

/// How many bytes of a read of `wanted` bytes at `offset` lie inside a file of
/// `size` bytes (0 at or past its end), as `pread(2)` returns them.
pub(crate) fn readable_len(size: u64, offset: u64, wanted: usize) -> usize {
    usize::try_from(size.saturating_sub(offset)).map_or(wanted, |left| left.min(wanted))
}

/// The attributes of one object, as `lstat(2)` would give them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub node: NodeId,
    pub file_type: FileType,
    /// Permission bits including set-uid, set-gid and sticky (`mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub nlink: u32,
    /// Seconds since the epoch.
    pub mtime: i64,
    pub atime: i64,
    pub ctime: i64,
    /// Device number for character and block devices (`makedev` encoding), else 0.
    pub rdev: u64,
    /// Bytes actually allocated on the filesystem (for sparse files, less than `size`).
    pub allocated: u64,
}

impl Metadata {
    pub fn is_dir(&self) -> bool {
        self.file_type == FileType::Directory
    }
    pub fn is_file(&self) -> bool {
        self.file_type == FileType::Regular
    }
    pub fn is_symlink(&self) -> bool {
        self.file_type == FileType::Symlink
    }
}

/// One entry of a directory listing (never `.` or `..`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: OsString,
    pub node: NodeId,
    pub file_type: FileType,
}

/// Owner and permissions of an object being created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewNode {
    /// Permission bits (`0o7777` mask).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl NewNode {
    /// Owned by root with the given permission bits.
    pub const fn root(mode: u32) -> Self {
        NewNode {
            mode,
            uid: 0,
            gid: 0,
        }
    }
}

/// Attributes to change; `None` leaves one as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub atime: Option<i64>,
    pub mtime: Option<i64>,
}
