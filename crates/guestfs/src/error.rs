//! Errors of guest filesystem operations.

use std::path::PathBuf;

/// What can go wrong reading or writing a guest filesystem.
///
/// Backends report node-level errors (`path` empty); the guest tree fills in the guest
/// path the caller asked for with [`Error::at`], so the message always names the object.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{}: no such file or directory", .0.display())]
    NotFound(PathBuf),
    #[error("{}: not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("{}: is a directory", .0.display())]
    IsADirectory(PathBuf),
    #[error("{}: directory not empty", .0.display())]
    NotEmpty(PathBuf),
    #[error("{}: already exists", .0.display())]
    AlreadyExists(PathBuf),
    #[error("{}: not a symbolic link", .0.display())]
    NotASymlink(PathBuf),
    #[error("{}: too many levels of symbolic links", .0.display())]
    TooManySymlinks(PathBuf),
    #[error("{}: the filesystem is read-only", .0.display())]
    ReadOnly(PathBuf),
    #[error("{}: cannot move across filesystems", .0.display())]
    CrossDevice(PathBuf),
    #[error("{}: invalid name or path", .0.display())]
    InvalidPath(PathBuf),
    #[error("{}: {what} is not supported by this filesystem", .path.display())]
    Unsupported { path: PathBuf, what: String },
    /// The filesystem uses features its library lacks (an open refused); `msg` names
    /// them.
    #[error("{}: {msg}", .path.display())]
    UnsupportedFeatures { path: PathBuf, msg: String },
    #[error("{}: no space left on the filesystem", .0.display())]
    NoSpace(PathBuf),
    #[error("{}: filesystem corrupt: {msg}", .path.display())]
    Corrupt { path: PathBuf, msg: String },
    /// A file too large to be read whole (see [`crate::tree::MAX_READ`]).
    #[error("{}: {size} bytes, larger than the {} MiB limit for a file read whole", .path.display(), .limit >> 20)]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    /// An error code from libext2fs (or another library), with its message.
    #[error("{}: {msg}", .path.display())]
    Backend { path: PathBuf, msg: String },
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Cancelled(#[from] snf_core::Cancelled),
}

/// Result of guest filesystem operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The same error, naming `path` (a guest path) instead of whatever it named before.
    pub fn at(self, path: impl Into<PathBuf>) -> Self {
        let p = path.into();
        match self {
            Error::NotFound(_) => Error::NotFound(p),
            Error::NotADirectory(_) => Error::NotADirectory(p),
            Error::IsADirectory(_) => Error::IsADirectory(p),
            Error::NotEmpty(_) => Error::NotEmpty(p),
            Error::AlreadyExists(_) => Error::AlreadyExists(p),
            Error::NotASymlink(_) => Error::NotASymlink(p),
            Error::TooManySymlinks(_) => Error::TooManySymlinks(p),
            Error::ReadOnly(_) => Error::ReadOnly(p),
            Error::CrossDevice(_) => Error::CrossDevice(p),
            Error::InvalidPath(_) => Error::InvalidPath(p),
            Error::NoSpace(_) => Error::NoSpace(p),
            Error::Unsupported { what, .. } => Error::Unsupported { path: p, what },
            Error::UnsupportedFeatures { msg, .. } => Error::UnsupportedFeatures { path: p, msg },
            Error::Corrupt { msg, .. } => Error::Corrupt { path: p, msg },
            Error::TooLarge { size, limit, .. } => Error::TooLarge {
                path: p,
                size,
                limit,
            },
            Error::Backend { msg, .. } => Error::Backend { path: p, msg },
            Error::Io { source, .. } => Error::Io { path: p, source },
            e @ Error::Cancelled(_) => e,
        }
    }

    /// Whether this error means the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound(_))
    }

    /// A node-level error with no path yet (backends use this; the tree adds the path).
    pub fn backend(msg: impl Into<String>) -> Self {
        Error::Backend {
            path: PathBuf::new(),
            msg: msg.into(),
        }
    }

    /// A node-level corruption error with no path yet.
    pub fn corrupt(msg: impl Into<String>) -> Self {
        Error::Corrupt {
            path: PathBuf::new(),
            msg: msg.into(),
        }
    }

    /// A node-level I/O error with no path yet.
    pub fn io(source: std::io::Error) -> Self {
        Error::Io {
            path: PathBuf::new(),
            source,
        }
    }
}
