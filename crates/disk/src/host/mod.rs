//! Host bundling: a raw image of the running system (`snf-mkimage /`).
//!
//! [`discover`] reads which disk and filesystems make up `/`; `copy` copies a
//! filesystem's tree file by file; `bundle` builds the image from both.

pub mod copy;
pub mod discover;

use std::io;
use std::path::PathBuf;

pub use discover::{discover, FsCopy, HostDisk, HostFs, HostLayout, Roots};

/// What went wrong bundling the host.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: no filesystem is mounted on /", .path.display())]
    NoRootMount { path: PathBuf },
    /// `/` is on a stacked device.
    #[error("root filesystem on {kind} ({device}) is not supported for host bundling yet")]
    Stacked { kind: &'static str, device: String },
    #[error("host filesystem {fstype} on {device} is not supported for bundling yet")]
    UnsupportedFs { fstype: String, device: String },
}
