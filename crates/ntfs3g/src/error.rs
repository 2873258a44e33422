//! Errors of the libntfs-3g binding.

use std::path::PathBuf;

/// An error of the binding. Every message names the object and says what is wrong in
/// one line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The image file could not be opened.
    #[error("{}: cannot open the image: {source}", .path.display())]
    Image {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// libntfs-3g could not mount the volume (not NTFS, corrupt, unreadable ...).
    #[error("{}: cannot open the NTFS volume at byte offset {offset}: {}", .path.display(), errno_text(*.errno))]
    Open {
        path: PathBuf,
        offset: u64,
        errno: i32,
    },
    /// The boot sector claims more clusters than the byte range holds.
    #[error(
        "{}: the NTFS volume at byte offset {offset} claims {volume} bytes, more than the \
         {range} bytes of its partition",
        .path.display()
    )]
    TooLarge {
        path: PathBuf,
        offset: u64,
        volume: u64,
        range: u64,
    },
    /// Windows was hibernated, or shut down with fast startup (which hibernates the
    /// kernel session), so the volume holds state Windows will restore.
    #[error(
        "{}: the NTFS volume at byte offset {offset} is hibernated (Windows was hibernated or \
         shut down with fast startup): boot Windows and shut it down fully (disable fast \
         startup) before changing it",
        .path.display()
    )]
    Hibernated { path: PathBuf, offset: u64 },
    /// The volume is marked dirty or its journal ($LogFile) holds unfinished work.
    #[error(
        "{}: the NTFS volume at byte offset {offset} was not shut down cleanly ({why}): boot \
         Windows and shut it down fully (disable fast startup) before changing it",
        .path.display()
    )]
    Unclean {
        path: PathBuf,
        offset: u64,
        why: &'static str,
    },
    /// An operation on one MFT record failed.
    #[error("{op} (MFT record {ino}): {}", errno_text(*.errno))]
    Op {
        op: &'static str,
        ino: u64,
        errno: i32,
    },
    /// A name that cannot be an NTFS file name.
    #[error("invalid NTFS file name {name:?}: {why}")]
    InvalidName { name: String, why: &'static str },
    /// Reparse data that is not what its tag promises.
    #[error("MFT record {ino}: malformed reparse point: {why}")]
    BadReparse { ino: u64, why: &'static str },
    /// A write on a volume opened read-only.
    #[error("{op}: the NTFS volume is opened read-only")]
    ReadOnly { op: &'static str },
}

/// The C library's text for an errno value, e.g. `No such file or directory (os error 2)`.
fn errno_text(errno: i32) -> String {
    std::io::Error::from_raw_os_error(errno).to_string()
}

impl Error {
    /// The errno value behind this error, when there is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Open { errno, .. } | Error::Op { errno, .. } => Some(*errno),
            Error::Image { source, .. } => source.raw_os_error(),
            Error::InvalidName { .. } => Some(libc_errno::EINVAL),
            Error::ReadOnly { .. } => Some(libc_errno::EROFS),
            Error::Hibernated { .. } | Error::Unclean { .. } => Some(libc_errno::EPERM),
            Error::BadReparse { .. } | Error::TooLarge { .. } => Some(libc_errno::EIO),
        }
    }

    /// Whether the object does not exist.
    pub fn is_not_found(&self) -> bool {
        self.errno() == Some(libc_errno::ENOENT)
    }
}

/// The few errno values the binding and its callers test for (Linux numbers).
pub mod libc_errno {
    pub const EPERM: i32 = 1;
    pub const ENOENT: i32 = 2;
    pub const EIO: i32 = 5;
    pub const EEXIST: i32 = 17;
    pub const ENOTDIR: i32 = 20;
    pub const EISDIR: i32 = 21;
    pub const EINVAL: i32 = 22;
    pub const EFBIG: i32 = 27;
    pub const ENOSPC: i32 = 28;
    pub const EROFS: i32 = 30;
    pub const ENAMETOOLONG: i32 = 36;
    pub const ENOTEMPTY: i32 = 39;
    pub const ENODATA: i32 = 61;
    pub const EOPNOTSUPP: i32 = 95;
}

/// Result of the binding's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
