//! Errors of the libext2fs binding.

use std::path::PathBuf;

use snf_core::command::CommandError;

use crate::info::ExtKind;

/// What class of failure an error code means, for callers that map errors onto their
/// own vocabulary (not found, exists, no space ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    NotFound,
    AlreadyExists,
    NoSpace,
    NotEmpty,
    NotADirectory,
    IsADirectory,
    ReadOnly,
    Unsupported,
    Corrupt,
    InvalidArgument,
    TooManyLinks,
    Io,
    /// The journal must be replayed before the filesystem can be used.
    NeedsRecovery,
    /// The superblock records errors found by the kernel or an earlier check.
    HasErrors,
    Other,
}

/// An error of the libext2fs binding. Every message names the object and says what is
/// wrong in one line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The filesystem could not be opened (not ext2/3/4, corrupt superblock, unknown
    /// features, unreadable file ...).
    #[error("{}: cannot open the ext2/3/4 filesystem at byte offset {offset}: {msg}", .path.display())]
    Open {
        path: PathBuf,
        offset: u64,
        kind: ErrorKind,
        code: i64,
        msg: String,
    },
    /// The superblock asks for features the linked libext2fs does not have.
    #[error(
        "{}: the {} filesystem at byte offset {offset} uses {} libext2fs {version} does not \
         support: {}",
        .path.display(),
        .fs_kind.name(),
        if .features.len() == 1 { "a feature" } else { "features" },
        .features.join(", ")
    )]
    UnsupportedFeatures {
        path: PathBuf,
        offset: u64,
        fs_kind: ExtKind,
        /// Names of known features, `incompat 0x80000` for unknown bits.
        features: Vec<String>,
        /// The libext2fs version, `1.47.0`.
        version: String,
    },
    /// The journal holds transactions that were never written to the filesystem.
    #[error(
        "{}: the ext3/ext4 journal at byte offset {offset} needs recovery (the filesystem was not \
         unmounted cleanly); open it writable to replay the journal first",
        .path.display()
    )]
    NeedsRecovery { path: PathBuf, offset: u64 },
    /// Replaying the journal with e2fsck failed.
    #[error("{}: replaying the ext3/ext4 journal at byte offset {offset} failed: {source}", .path.display())]
    Recovery {
        path: PathBuf,
        offset: u64,
        #[source]
        source: CommandError,
    },
    /// The superblock says the filesystem has errors.
    #[error(
        "{}: the filesystem at byte offset {offset} is marked as having errors; check it with \
         e2fsck first",
        .path.display()
    )]
    HasErrors { path: PathBuf, offset: u64 },
    /// An operation on one inode failed.
    #[error("{op} (inode {ino}): {msg}")]
    Op {
        op: &'static str,
        ino: u32,
        kind: ErrorKind,
        code: i64,
        msg: String,
    },
    /// A name that cannot be a directory entry.
    #[error("invalid file name {name:?}: {why}")]
    InvalidName { name: String, why: &'static str },
    /// A write on a filesystem opened read-only.
    #[error("{op}: the filesystem is opened read-only")]
    ReadOnly { op: &'static str },
}

impl Error {
    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Open { kind, .. } | Error::Op { kind, .. } => *kind,
            Error::UnsupportedFeatures { .. } => ErrorKind::Unsupported,
            Error::NeedsRecovery { .. } => ErrorKind::NeedsRecovery,
            Error::Recovery { .. } => ErrorKind::NeedsRecovery,
            Error::HasErrors { .. } => ErrorKind::HasErrors,
            Error::InvalidName { .. } => ErrorKind::InvalidArgument,
            Error::ReadOnly { .. } => ErrorKind::ReadOnly,
        }
    }
}

/// Result of the binding's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
