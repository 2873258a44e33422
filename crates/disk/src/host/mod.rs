//! Host bundling: a raw image of the running system (`snf-mkimage /`).
//!
//! [`discover`] reads which disk and filesystems make up `/`; `copy` copies a
//! filesystem's tree file by file; `bundle` builds the image from both.

pub mod bundle;
pub mod copy;
pub mod discover;

use std::io;
use std::path::PathBuf;

pub use bundle::{bundle, Bundle};
pub use discover::{discover, FsCopy, HostDisk, HostFs, HostLayout, Roots, ROOT_ENV};

/// What went wrong bundling the host.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no filesystem is mounted on {} (according to {})", .root.display(), .path.display())]
    NoRootMount { root: PathBuf, path: PathBuf },
    /// `/` is on a stacked device.
    #[error("root filesystem on {kind} ({device}) is not supported for host bundling yet")]
    Stacked { kind: &'static str, device: String },
    #[error("host filesystem {fstype} on {device} is not supported for bundling yet")]
    UnsupportedFs { fstype: String, device: String },
    #[error("host bundling needs root")]
    NotRoot,
    #[error("{}: {message}", .path.display())]
    Tool { path: PathBuf, message: String },
    #[error("partition table of {}: {}", .0.display(), .1)]
    Table(PathBuf, String),
    #[error(transparent)]
    Write(#[from] crate::workdir::WriteError),
    #[error(transparent)]
    WorkDir(#[from] crate::workdir::WorkDirError),
    #[error(transparent)]
    Copy(#[from] copy::CopyError),
}

impl HostError {
    fn tool(path: &std::path::Path, e: snf_core::command::CommandError) -> HostError {
        HostError::Tool {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }

    /// Whether the work stopped because the user cancelled.
    pub fn is_cancelled(&self) -> bool {
        match self {
            HostError::Copy(copy::CopyError::Cancelled(_)) => true,
            HostError::Tool { message, .. } => message.contains("interrupted by the user"),
            _ => snf_core::cancel::is_requested(),
        }
    }
}
